/* HTTP CONNECT proxies (src/proxy.c, src/tcplink.c). The first byte selects:
 *
 * - even: syn_proxy_select. The rest, split at NUL bytes, is the configured proxy (the first
 *   part; "\x01" alone stands for NULL: from the environment), the target host, https_proxy and
 *   no_proxy (set in the environment). Checked: the verdict is 0, 1 or INVALID_ARGUMENT with a
 *   bounded detail; a chosen proxy has a non-empty host, a port, a "shown" URL without the
 *   password; nothing leaks (syn_proxy_clear).
 * - odd: the proxy's answer to CONNECT. A client link (syn_tcplink_connect through a "proxy" that
 *   is this harness, on 127.0.0.1) reads the rest of the input as the proxy's response, written
 *   in chunks: each chunk is a length byte and that many bytes (fz_data), with a turn of the loop
 *   between chunks; then the harness closes its side. Bit 1 of the selector: the link has
 *   credentials (the 407 wording). Checked: the link ends with ops.closed exactly once (the
 *   proxy's refusal, the malformed answer, or the TLS handshake that follows a 2xx failing on the
 *   closed socket), a bounded detail, and nothing leaks; ops.up never runs. */
#include "fuzz.h"

#include "internal.h"
#include "tcplink.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ev_loop *loop;
static SSL_CTX *ctx;
static int lfd = -1;
static syn_sockaddr laddr;
/* The environment's https_proxy and no_proxy, rewritten in place for each input (setenv would keep
 * every value ever set: glibc never frees them). */
#define ENV_MAX 4200
static char env_proxy[ENV_MAX + 16] = "https_proxy=", env_np[ENV_MAX + 16] = "no_proxy=";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    loop = ev_loop_new(EVFLAG_AUTO);
    ctx = SSL_CTX_new(TLS_client_method());
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (!loop || !ctx || lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(lfd, 16) != 0) {
        fprintf(stderr, "fuzz_proxy: cannot set up the loop, context or listener\n");
        exit(1);
    }
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    unsetenv("NO_PROXY");
    putenv(env_proxy);
    putenv(env_np);
    laddr.len = sizeof(laddr.ss);
    getsockname(lfd, (struct sockaddr *)&laddr.ss, &laddr.len);
    return 0;
}

/* ---- syn_proxy_select ---- */

static char *part(fz_reader *r) {
    const uint8_t *nul = memchr(r->p, 0, r->n);
    size_t n = nul ? (size_t)(nul - r->p) : r->n;
    char *s = malloc(n + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n + (nul ? 1 : 0);
    r->n -= n + (nul ? 1 : 0);
    return s;
}

static void select_one(fz_reader *r) {
    char *configured = part(r), *target = part(r), *env = part(r), *np = part(r);
    snprintf(env_proxy + 12, ENV_MAX, "%s", env);
    snprintf(env_np + 9, ENV_MAX, "%s", np);
    syn_proxy p;
    char detail[SYNESIS_DETAIL_MAX];
    memset(detail, 0x5a, sizeof(detail));
    const char *conf = strcmp(configured, "\x01") == 0 ? NULL : configured;
    int rc = syn_proxy_select(conf, target, &p, detail);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == SYNESIS_ERR_INVALID_ARGUMENT);
    if (rc < 0)
        FUZZ_CHECK(memchr(detail, '\0', sizeof(detail)) != NULL);
    if (rc == 1) {
        FUZZ_CHECK(p.host[0] != '\0');
        FUZZ_CHECK(p.port != 0);
        FUZZ_CHECK(memchr(p.shown, '\0', sizeof(p.shown)) != NULL);
        if (p.basic_auth)
            FUZZ_CHECK(strlen(p.basic_auth) % 4 == 0);
    } else {
        FUZZ_CHECK(p.basic_auth == NULL);
    }
    syn_proxy_clear(&p);
    free(configured);
    free(target);
    free(env);
    free(np);
}

/* ---- the proxy's answer ---- */

typedef struct run {
    int closed, up;
    syn_tcplink *l;
} run;

static void op_up(syn_tcplink *l) { ((run *)syn_tcplink_owner(l))->up++; }

static void op_packet(syn_tcplink *l, const uint8_t *d, size_t n) {
    (void)l;
    (void)d;
    (void)n;
    FUZZ_CHECK(!"a frame before the link is up");
}

static void op_closed(syn_tcplink *l, int err, const char *detail) {
    run *r = syn_tcplink_owner(l);
    r->closed++;
    FUZZ_CHECK(err < 0);
    FUZZ_CHECK(detail && strlen(detail) < SYNESIS_DETAIL_MAX);
    syn_tcplink_free(l);
    r->l = NULL;
}

static const syn_tcplink_ops ops = {.up = op_up, .packet = op_packet, .closed = op_closed};

static void answer_one(fz_reader *in, int auth) {
    syn_proxy px;
    memset(&px, 0, sizeof(px));
    snprintf(px.host, sizeof(px.host), "127.0.0.1");
    px.port = ntohs(((struct sockaddr_in *)&laddr.ss)->sin_port);
    if (auth)
        px.basic_auth = "dXNlcjpwdw==";
    syn_tcplink_client_opts o = {.connect_to = &laddr,
                                 .proxy = &px,
                                 .target_host = "edge.example",
                                 .target_port = 443,
                                 .ctx = ctx,
                                 .server_name = "edge.example",
                                 .timeout = 10};
    run r = {0};
    char detail[SYNESIS_DETAIL_MAX];
    FUZZ_CHECK(syn_tcplink_connect(&r.l, loop, &o, &ops, &r, detail) == 0);
    int s = accept(lfd, NULL, NULL);
    FUZZ_CHECK(s >= 0);
    while (!fz_end(in) && !r.closed) {
        size_t n;
        const uint8_t *p = fz_data(in, &n);
        if (n)
            (void)send(s, p, n, MSG_NOSIGNAL);
        for (int i = 0; i < 4 && !r.closed; i++)
            ev_run(loop, EVRUN_NOWAIT);
    }
    shutdown(s, SHUT_WR);
    while (!r.closed)
        ev_run(loop, EVRUN_ONCE);
    close(s);
    FUZZ_CHECK(r.closed == 1 && r.up == 0 && r.l == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_reader r = {data, size};
    uint8_t sel = fz_u8(&r);
    if (sel & 1)
        answer_one(&r, (sel & 2) != 0);
    else
        select_one(&r);
    return 0;
}
