/* Cloud URL parsing: "quic://host[:port]" and "https://host[:port]". Internal. */
#ifndef SYNESIS_URL_H
#define SYNESIS_URL_H

#include <stdint.h>

/* Port used when the URL names none. */
#define SYN_URL_DEFAULT_PORT 443

/* Longest host name accepted (RFC 1035 presentation form without the trailing dot). */
#define SYN_URL_HOST_MAX 253

typedef struct syn_url {
    char host[256]; /* host name or IP literal, without brackets, NUL-terminated */
    uint16_t port;  /* 1..65535; SYN_URL_DEFAULT_PORT when the URL names none */
    int is_ip;      /* 0 = name, 4 = IPv4 literal, 6 = IPv6 literal */
} syn_url;

/*
 * Parses a cloud URL into out.
 *
 * Accepted: scheme "quic" or "https" (case-insensitive) followed by "://"; then a host that is
 * either a name of at most 253 characters made of [A-Za-z0-9.-] (labels of 1..63 characters that
 * neither start nor end with '-'), a dotted-quad IPv4 address, or an IPv6 address in brackets
 * ("[::1]", no zone index); then an optional ":port" of 1..65535 in decimal; then an optional
 * single "/".
 *
 * Refused: a missing or unknown scheme, userinfo ("user@"), an empty host, an unbracketed IPv6
 * address, a name whose last label is numeric but which is not a valid dotted-quad IPv4 address
 * ("1.2.3", "0x7f.1", "1.2.3.256": getaddrinfo would read these as numbers), any other character,
 * an empty, zero, non-numeric or too large port, a path other than "/", a query or a fragment.
 *
 * On success returns 0 and fills out. On failure returns SYNESIS_ERR_INVALID_URL (or
 * SYNESIS_ERR_INVALID_ARGUMENT when out is NULL), leaves out untouched and writes into detail
 * (SYNESIS_DETAIL_MAX bytes; may be NULL) a sentence that quotes the URL and says what is wrong,
 * e.g. "invalid cloud URL 'quic://edge:0': port 0 is out of range (1-65535)". Non-printable
 * characters are shown as '?' and very long URLs are shortened in the quote.
 */
int syn_url_parse(const char *url, syn_url *out, char *detail);

#endif /* SYNESIS_URL_H */
