/* The cloud URL parser (src/url.c): any bytes as a URL. Checked: the detail is a bounded string;
 * an accepted URL gives a host that is non-empty, printable and of the kind is_ip says, and
 * written back in canonical form it parses again to the same result. */
#include "fuzz.h"

#include "internal.h"
#include "url.h"

#include <arpa/inet.h>

static void format_url(const syn_url *u, char *out, size_t len) {
    if (u->is_ip == 6)
        snprintf(out, len, "quic://[%s]:%u", u->host, (unsigned)u->port);
    else
        snprintf(out, len, "quic://%s:%u", u->host, (unsigned)u->port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';

    syn_url u;
    char detail[SYNESIS_DETAIL_MAX];
    memset(detail, 0x5a, sizeof(detail));
    int rv = syn_url_parse(url, &u, detail);
    FUZZ_CHECK(rv == 0 || rv == SYNESIS_ERR_INVALID_URL);
    /* Without a detail buffer: same verdict. */
    syn_url u2;
    FUZZ_CHECK(syn_url_parse(url, &u2, NULL) == rv);
    if (rv != 0) {
        FUZZ_CHECK(memchr(detail, '\0', sizeof(detail)) != NULL);
        FUZZ_CHECK(strncmp(detail, "invalid cloud URL '", 19) == 0 ||
                   strcmp(detail, "no cloud URL given") == 0);
        free(url);
        return 0;
    }
    FUZZ_CHECK(memcmp(&u, &u2, sizeof(u)) == 0);
    size_t hl = strnlen(u.host, sizeof(u.host));
    FUZZ_CHECK(hl > 0 && hl < sizeof(u.host));
    FUZZ_CHECK(u.port >= 1);
    for (size_t i = 0; i < hl; i++)
        FUZZ_CHECK(u.host[i] > 0x20 && u.host[i] < 0x7f);
    if (u.is_ip == 4) {
        struct in_addr a;
        FUZZ_CHECK(inet_pton(AF_INET, u.host, &a) == 1);
    } else if (u.is_ip == 6) {
        struct in6_addr a;
        FUZZ_CHECK(inet_pton(AF_INET6, u.host, &a) == 1);
    } else {
        FUZZ_CHECK(u.is_ip == 0);
        FUZZ_CHECK(hl <= SYN_URL_HOST_MAX);
    }
    /* The canonical form parses to the same host, port and kind. */
    char again[600];
    format_url(&u, again, sizeof(again));
    syn_url v;
    FUZZ_CHECK(syn_url_parse(again, &v, detail) == 0);
    FUZZ_CHECK(strcmp(u.host, v.host) == 0 && u.port == v.port && u.is_ip == v.is_ip);
    free(url);
    return 0;
}
