/* Bytes into a live edge over a real QUIC-over-TCP link: the fuzzer plays a peer of the edge's TCP
 * listener after the TLS handshake. The fixture (live.h) runs the edge (and a tunnel, over UDP);
 * this harness holds one TLS connection (OpenSSL, ALPN synesis-tcp/1) to the edge's listener
 * across inputs, made again whenever the edge closes it. Each input is a control byte (bit 0:
 * close the connection at the end of the input, mid-frame or not; bit 1: read nothing the edge
 * sends during the input) and then chunks (fz_data: a length byte and that many bytes, 254/255
 * for long or repeated ones), each written as TLS application data with a turn of the loop
 * after it. So the edge's link reads them in whatever records and segments they came in, cuts
 * frames (bad lengths close the link), and routes each frame as a datagram: version negotiation,
 * Initial and Retry handling, connection IDs, stateless answers on the link. Checked: the edge
 * never holds more links than there are (ours and none of the tunnel's), no link's send queue
 * passes SYN_TCPLINK_MAX_QUEUED, and the tunnel stays served (its connection is ensured every 256
 * inputs). */
#include "fuzz.h"
#include "live.h"

#include "tcplink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static fz_live L;
static SSL_CTX *ctx;
static SSL *ssl;
static int fd = -1;
static uint64_t links_made;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN); /* (our writes to a link the edge closed: EPIPE, not death) */
    fz_live_options o = {0};
    fz_live_init(&L, &o);
    ctx = SSL_CTX_new(TLS_client_method());
    FUZZ_CHECK(ctx != NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    static const unsigned char alpn[] = "\x0dsynesis-tcp/1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    return 0;
}

static void drop_link(void) {
    SSL_free(ssl);
    ssl = NULL;
    if (fd >= 0)
        close(fd);
    fd = -1;
}

static void turn(int n) {
    for (int i = 0; i < n; i++)
        ev_run(L.loop, EVRUN_NOWAIT);
}

static void make_link(void) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    FUZZ_CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(syn_edge_tcp_port(L.edge)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rv = connect(fd, (struct sockaddr *)&a, sizeof(a));
    FUZZ_CHECK(rv == 0 || errno == EINPROGRESS);
    ssl = SSL_new(ctx);
    FUZZ_CHECK(ssl != NULL);
    SSL_set_fd(ssl, fd);
    for (int i = 0; i < 100000; i++) {
        int r = SSL_connect(ssl);
        if (r == 1) {
            links_made++;
            return;
        }
        int e = SSL_get_error(ssl, r);
        FUZZ_CHECK(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        turn(1);
    }
    FUZZ_CHECK(!"no TLS handshake with the edge's TCP listener");
}

/* Reads what the edge sent; 0 when the edge closed the link. */
static int drain(void) {
    char b[16384];
    for (;;) {
        int r = SSL_read(ssl, b, sizeof(b));
        if (r > 0)
            continue;
        int e = SSL_get_error(ssl, r);
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    }
}

static void check_edge(void) {
    syn_edge_stats es;
    syn_edge_get_stats(L.edge, &es);
    FUZZ_CHECK(es.tcp_links + es.tcp_handshaking <= 1);
    FUZZ_CHECK(es.tcp_queued_max <= SYN_TCPLINK_MAX_QUEUED);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_reader in = {data, size};
    uint8_t ctl = fz_u8(&in);
    if (L.inputs % 256 == 0)
        fz_live_ensure(&L);
    L.inputs++;
    if (!ssl)
        make_link();
    int alive = 1;
    while (alive && !fz_end(&in)) {
        size_t n;
        const uint8_t *p = fz_data(&in, &n);
        for (int i = 0; n && i < 10000; i++) {
            int r = SSL_write(ssl, p, (int)n);
            if (r > 0)
                break;
            int e = SSL_get_error(ssl, r);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
                alive = 0;
                break;
            }
            turn(1);
            if (!(ctl & 2) && !drain()) {
                alive = 0;
                break;
            }
        }
        turn(2);
        if (alive && !(ctl & 2))
            alive = drain();
        check_edge();
    }
    turn(4);
    if (alive)
        alive = drain();
    check_edge();
    if (!alive || (ctl & 1)) {
        drop_link();
        turn(2);
    }
    return 0;
}
