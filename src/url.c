/* Cloud URL parsing. Strict on purpose: whatever we accept goes to getaddrinfo and into TLS name
 * checks, so anything ambiguous (numeric-looking names, zone indexes, userinfo) is refused. */
#include "url.h"

#include "internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* How much of the URL a detail message quotes. */
#define QUOTE_MAX 160

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_xdigit(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A printable copy of the start of url for messages. */
static void quote(const char *url, char *q, size_t qlen) {
    size_t i = 0;
    for (; url[i] && i < QUOTE_MAX && i + 4 < qlen; i++) {
        unsigned char c = (unsigned char)url[i];
        q[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    q[i] = '\0';
    if (url[i])
        snprintf(q + i, qlen - i, "...");
}

static int bad(char *detail, const char *url, const char *fmt, ...) SYNESIS_PRINTF(3, 4);

static int bad(char *detail, const char *url, const char *fmt, ...) {
    if (!detail)
        return SYNESIS_ERR_INVALID_URL;
    char q[QUOTE_MAX + 8];
    quote(url, q, sizeof(q));
    int n = snprintf(detail, SYNESIS_DETAIL_MAX, "invalid cloud URL '%s': ", q);
    if (n > 0 && n < SYNESIS_DETAIL_MAX) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail + n, SYNESIS_DETAIL_MAX - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return SYNESIS_ERR_INVALID_URL;
}

/* A printable, possibly shortened copy of len bytes at s for messages. */
static const char *frag(const char *s, size_t len, char buf[40]) {
    size_t n = len > 32 ? 32 : len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    snprintf(buf + n, 40 - n, "%s", len > n ? "..." : "");
    return buf;
}

/* Shows one character of the URL in a message: itself if printable, else as \xNN. */
static const char *show_char(char c, char buf[8]) {
    unsigned char u = (unsigned char)c;
    if (u >= 0x21 && u < 0x7f)
        snprintf(buf, 8, "%c", c);
    else
        snprintf(buf, 8, "\\x%02x", u);
    return buf;
}

/* WHATWG URL rule: a name whose last label is a number is an IPv4 address or nothing. */
static int ends_in_number(const char *host, size_t len) {
    size_t start = len;
    while (start > 0 && host[start - 1] != '.')
        start--;
    const char *l = host + start;
    size_t ll = len - start; /* >= 1: empty labels were refused before */
    if (ll >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
        for (size_t i = 2; i < ll; i++)
            if (!is_xdigit(l[i]))
                return 0;
        return 1;
    }
    for (size_t i = 0; i < ll; i++)
        if (!is_digit(l[i]))
            return 0;
    return 1;
}

static int parse_name(const char *url, const char *h, size_t len, syn_url *u, char *detail) {
    char cb[8];
    if (len > SYN_URL_HOST_MAX)
        return bad(detail, url, "the host name is longer than %d characters", SYN_URL_HOST_MAX);
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(h[i]) && h[i] != '.' && h[i] != '-')
            return bad(detail, url, "the host contains the invalid character '%s'",
                       show_char(h[i], cb));
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && h[j] != '.')
            j++;
        if (j == i)
            return bad(detail, url, "the host name has an empty label");
        if (j - i > 63)
            return bad(detail, url, "a label of the host name is longer than 63 characters");
        if (h[i] == '-' || h[j - 1] == '-')
            return bad(detail, url, "a label of the host name starts or ends with '-'");
        i = j + 1;
        if (j + 1 == len) /* a trailing dot leaves an empty last label */
            return bad(detail, url, "the host name has an empty label");
    }
    memcpy(u->host, h, len);
    u->host[len] = '\0';
    if (ends_in_number(h, len)) {
        struct in_addr a4;
        if (inet_pton(AF_INET, u->host, &a4) != 1)
            return bad(detail, url, "'%s' looks like an IPv4 address but is not a valid one",
                       u->host);
        u->is_ip = 4;
    }
    return 0;
}

static int parse_port(const char *url, const char *p, size_t len, syn_url *u, char *detail) {
    if (len == 0)
        return bad(detail, url, "the port is empty");
    char fb[40];
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return bad(detail, url, "the port '%s' is not a decimal number", frag(p, len, fb));
        if (v <= 65535)
            v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return bad(detail, url, "port %s is out of range (1-65535)", frag(p, len, fb));
    u->port = (uint16_t)v;
    return 0;
}

int syn_url_parse(const char *url, syn_url *out, char *detail) {
    if (!out)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no URL output given");
    if (!url)
        return syn_fail(detail, SYNESIS_ERR_INVALID_URL, "no cloud URL given");
    char fb[40];
    syn_url u;
    memset(&u, 0, sizeof(u));
    u.port = SYN_URL_DEFAULT_PORT;

    const char *sep = strstr(url, "://");
    if (!sep)
        return bad(detail, url, "no scheme (expected quic:// or https://)");
    size_t slen = (size_t)(sep - url);
    if (!((slen == 4 && strncasecmp(url, "quic", 4) == 0) ||
          (slen == 5 && strncasecmp(url, "https", 5) == 0)))
        return bad(detail, url, "unknown scheme '%s' (expected quic or https)",
                   frag(url, slen, fb));

    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *rest = auth + alen;
    if (memchr(auth, '@', alen))
        return bad(detail, url, "user information ('...@') is not allowed");
    if (alen == 0)
        return bad(detail, url, "the host is empty");

    const char *port = NULL;
    size_t plen = 0;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (!close)
            return bad(detail, url, "'[' without a matching ']' in the host");
        size_t hlen = (size_t)(close - auth - 1);
        if (hlen == 0)
            return bad(detail, url, "the host is empty");
        if (memchr(auth + 1, '%', hlen))
            return bad(detail, url, "IPv6 zone indexes are not supported");
        struct in6_addr a6;
        if (hlen >= INET6_ADDRSTRLEN)
            return bad(detail, url, "the bracketed host is not a valid IPv6 address");
        memcpy(u.host, auth + 1, hlen);
        u.host[hlen] = '\0';
        if (inet_pton(AF_INET6, u.host, &a6) != 1)
            return bad(detail, url, "'%s' is not a valid IPv6 address", frag(u.host, hlen, fb));
        u.is_ip = 6;
        const char *after = close + 1;
        size_t left = alen - (size_t)(after - auth);
        if (left > 0) {
            if (after[0] != ':')
                return bad(detail, url, "unexpected characters after ']'");
            port = after + 1;
            plen = left - 1;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        size_t hlen = colon ? (size_t)(colon - auth) : alen;
        if (colon && memchr(colon + 1, ':', alen - hlen - 1))
            return bad(detail, url, "an IPv6 address must be enclosed in brackets");
        if (memchr(auth, ']', alen))
            return bad(detail, url, "']' without a matching '['");
        if (hlen == 0)
            return bad(detail, url, "the host is empty");
        int rv = parse_name(url, auth, hlen, &u, detail);
        if (rv != 0)
            return rv;
        if (colon) {
            port = colon + 1;
            plen = alen - hlen - 1;
        }
    }
    if (port) {
        int rv = parse_port(url, port, plen, &u, detail);
        if (rv != 0)
            return rv;
    }

    if (rest[0] != '\0' && strcmp(rest, "/") != 0) {
        size_t path = strcspn(rest, "?#");
        if (path > 1) /* rest starts with '/', '?' or '#' */
            return bad(detail, url, "a path ('%s') is not allowed", frag(rest, path, fb));
        if (rest[path] == '?')
            return bad(detail, url, "a query ('?...') is not allowed");
        return bad(detail, url, "a fragment ('#...') is not allowed");
    }
    *out = u;
    return 0;
}
