/* HTTP CONNECT proxy selection as curl does it (tcplink.h, syn_proxy_select). */
#include "tcplink.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void syn_proxy_clear(syn_proxy *p) {
    if (!p)
        return;
    free(p->basic_auth);
    memset(p, 0, sizeof(*p));
}

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes src[0..n) into dst (room for n + 1). Returns 0, or -1 on a bad escape or an
 * encoded NUL. */
static int pct_decode(char *dst, const char *src, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval((unsigned char)src[i + 1])) < 0 ||
                (l = hexval((unsigned char)src[i + 2])) < 0 || (h == 0 && l == 0))
                return -1;
            dst[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            dst[o++] = src[i];
        }
    }
    dst[o] = '\0';
    return 0;
}

/* Parses "[http://][user[:password]@]host[:port][/]" into out. from names the source for
 * messages. */
static int parse_url(const char *url, const char *from, syn_proxy *out, char *detail) {
    const char *p = url;
    const char *scheme_end = strstr(p, "://");
    if (scheme_end) {
        size_t sl = (size_t)(scheme_end - p);
        if (sl == 5 && strncasecmp(p, "https", 5) == 0)
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: proxy URL \"https://...\": TLS to the proxy is not supported; "
                            "use an http:// proxy (the tunnel's own TLS runs inside CONNECT)",
                            from);
        if (sl != 4 || strncasecmp(p, "http", 4) != 0)
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: proxy scheme \"%.*s\" is not supported (only http:// CONNECT "
                            "proxies)",
                            from, (int)(sl > 16 ? 16 : sl), p);
        p = scheme_end + 3;
    }
    /* The authority ends at the first '/', '?' or '#'. */
    size_t alen = strcspn(p, "/?#");
    const char *auth_end = p + alen;
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    char user[256] = "", pass[256] = "";
    int has_user = 0, has_pass = 0;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = (size_t)((colon ? colon : at) - p);
        if (ul >= sizeof(user) || (colon && (size_t)(at - colon - 1) >= sizeof(pass)))
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: the proxy URL's user name or password is too long", from);
        if (pct_decode(user, p, ul) != 0 ||
            (colon && pct_decode(pass, colon + 1, (size_t)(at - colon - 1)) != 0))
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: bad percent-encoding in the proxy URL's credentials", from);
        has_user = 1;
        has_pass = colon != NULL;
        p = at + 1;
    }
    const char *host = p, *host_end;
    const char *rest;
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(auth_end - p));
        if (!host_end)
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: malformed proxy URL (no ']' after an IPv6 address)", from);
        host = p + 1;
        rest = host_end + 1;
    } else {
        host_end = p;
        while (host_end < auth_end && *host_end != ':')
            host_end++;
        rest = host_end;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl >= sizeof(out->host))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "%s: the proxy URL has %s host", from,
                        hl ? "too long a" : "no");
    for (const char *c = host; c < host_end; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '%' || *c == '@')
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: malformed proxy host in the URL", from);
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    if (*p == '[') {
        unsigned char b[16];
        if (inet_pton(AF_INET6, out->host, b) != 1)
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: \"[%s]\" is not an IPv6 address", from, out->host);
    }
    unsigned long port = 1080;
    if (rest < auth_end) {
        if (*rest != ':' || rest + 1 == auth_end)
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: malformed proxy URL after the host", from);
        port = 0;
        for (const char *c = rest + 1; c < auth_end; c++) {
            if (!isdigit((unsigned char)*c) || port > 65535)
                return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                                "%s: bad proxy port in the URL", from);
            port = port * 10 + (unsigned long)(*c - '0');
        }
        if (port == 0 || port > 65535)
            return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                            "%s: the proxy port must be 1..65535", from);
    }
    if (*auth_end && strcmp(auth_end, "/") != 0)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT,
                        "%s: a proxy URL takes no path, query or fragment", from);
    out->port = (uint16_t)port;
    const char *lb = strchr(out->host, ':') ? "[" : "", *rb = *lb ? "]" : "";
    if (has_user) {
        char plain[512];
        int n = snprintf(plain, sizeof(plain), "%s:%s", user, pass);
        out->basic_auth = malloc(4 * (((size_t)n + 2) / 3) + 1);
        if (!out->basic_auth)
            return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
        EVP_EncodeBlock((unsigned char *)out->basic_auth, (const unsigned char *)plain, n);
        OPENSSL_cleanse(plain, sizeof(plain));
        OPENSSL_cleanse(pass, sizeof(pass));
    }
    char shown[400];
    if (has_user)
        snprintf(shown, sizeof(shown), "http://%.64s%s@%s%s%s:%u", user, has_pass ? ":***" : "", lb,
                 out->host, rb, (unsigned)out->port);
    else
        snprintf(shown, sizeof(shown), "http://%s%s%s:%u", lb, out->host, rb, (unsigned)out->port);
    syn_copy_str(out->shown, sizeof(out->shown), shown);
    return 1;
}

/* An IP literal (brackets allowed) into bytes: 4 or 16, or 0 when host is not one. */
static int ip_bytes(const char *host, size_t n, unsigned char out[16]) {
    char buf[64];
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, host, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, buf, out) == 1)
        return 16;
    return 0;
}

/* One no_proxy entry (trimmed, n > 0) against the target. */
static int entry_matches(const char *e, size_t n, const char *host, size_t hl) {
    if (n == 1 && e[0] == '*')
        return 1;
    unsigned char hip[16], eip[16];
    int hfam = ip_bytes(host, hl, hip);
    const char *slash = memchr(e, '/', n);
    if (hfam) {
        int bits = -1;
        size_t an = slash ? (size_t)(slash - e) : n;
        int efam = ip_bytes(e, an, eip);
        if (!efam)
            return 0;
        if (slash) {
            bits = 0;
            for (const char *c = slash + 1; c < e + n; c++) {
                if (!isdigit((unsigned char)*c) || bits > 128)
                    return 0;
                bits = bits * 10 + (*c - '0');
            }
            if (slash + 1 == e + n)
                return 0;
        }
        if (efam != hfam)
            return 0;
        if (bits < 0 || bits > efam * 8)
            bits = efam * 8;
        int whole = bits / 8, part = bits % 8;
        if (memcmp(hip, eip, (size_t)whole) != 0)
            return 0;
        if (part) {
            unsigned char mask = (unsigned char)(0xff << (8 - part));
            return (hip[whole] & mask) == (eip[whole] & mask);
        }
        return 1;
    }
    if (slash)
        return 0;
    /* names: ".example.com" as "example.com"; the name itself and its subdomains; a trailing
     * dot on either side does not count */
    if (e[0] == '.') {
        e++;
        n--;
    }
    if (n && e[n - 1] == '.')
        n--;
    if (hl && host[hl - 1] == '.')
        hl--;
    if (n == 0 || hl < n)
        return 0;
    if (strncasecmp(host + hl - n, e, n) != 0)
        return 0;
    return hl == n || host[hl - n - 1] == '.';
}

static int no_proxy_matches(const char *list, const char *host) {
    size_t hl = strlen(host);
    for (const char *p = list; *p;) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *s = p;
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            p++;
        if (p > s && entry_matches(s, (size_t)(p - s), host, hl))
            return 1;
    }
    return 0;
}

int syn_proxy_select(const char *configured, const char *target_host, syn_proxy *out,
                     char *detail) {
    if (!out || !target_host)
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "no target or output");
    memset(out, 0, sizeof(*out));
    if (configured) {
        if (!configured[0])
            return 0;
        int rc = parse_url(configured, "the configured proxy", out, detail);
        if (rc < 0)
            syn_proxy_clear(out);
        return rc;
    }
    static const char *const vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    const char *url = NULL, *var = NULL;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]) && !url; i++) {
        const char *v = getenv(vars[i]);
        if (v && v[0]) {
            url = v;
            var = vars[i];
        }
    }
    if (!url)
        return 0;
    const char *np = getenv("no_proxy");
    if (!np || !np[0])
        np = getenv("NO_PROXY");
    if (np && np[0] && no_proxy_matches(np, target_host))
        return 0;
    char from[64];
    snprintf(from, sizeof(from), "%s in the environment", var);
    int rc = parse_url(url, from, out, detail);
    if (rc < 0)
        syn_proxy_clear(out);
    return rc;
}
