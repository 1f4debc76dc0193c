/* Datagrams into a live client connection after the handshake: the fuzzer plays the edge.
 *
 * The fixture (live.h) runs a real TLS handshake between the tunnel and the in-process edge; the
 * TLS key log gives the 1-RTT traffic secrets. The tunnel's socket is then pointed at a socket of
 * this harness (the edge hears nothing more of the connection), and every input becomes 1-RTT
 * packets protected with the edge's keys (AEAD and header protection through ngtcp2_crypto, the
 * negotiated cipher), fed to the tunnel's connection exactly as its socket reader does
 * (syn_qconn_recv, then a write pass). So ngtcp2 decrypts them and parses the fuzzer's frames, and
 * everything ngtcp2 then calls in the library runs: the driver's callbacks, the tunnel's requests,
 * streams and report parser, flow control, connection IDs, key update, close handling. What the
 * tunnel sends comes back to the harness, which reads the packet numbers (header protection only)
 * so that ACK frames acknowledge packets that were really sent.
 *
 * Input: a setup byte (bits 0-1: requests to open first, 2-3: streams), then a program of
 * operations (op % 25) that append frames to the current packet (sent when full, at an explicit
 * end of packet, and at the end):
 *   0 PADDING  1 PING  2 ACK  3 RESET_STREAM  4 STOP_SENDING  5 CRYPTO  6 NEW_TOKEN  7 STREAM
 *   8 MAX_DATA  9 MAX_STREAM_DATA  10 MAX_STREAMS  11 DATA_BLOCKED  12 STREAM_DATA_BLOCKED
 *   13 STREAMS_BLOCKED  14 NEW_CONNECTION_ID  15 RETIRE_CONNECTION_ID  16 PATH_CHALLENGE
 *   17 PATH_RESPONSE  18 CONNECTION_CLOSE  19 HANDSHAKE_DONE  20 DATAGRAM  21 raw frame bytes
 *   22 end of packet (flags: key update, reserved bits, another source address, ECN, a trailing
 *      byte)  23 a raw datagram (unprotected; optionally behind a valid short header)
 *   24 the application (open a request or a stream, write, reset, cancel, a write pass)
 * Values are mostly small (fz_val); stream operands pick among the tunnel's streams, the edge's
 * unidirectional (report) streams, or any id. STREAM frames continue at the stream's offset
 * unless the operation asks for an explicit one.
 *
 * Built a second time as fuzz_edge_packet (FUZZ_EDGE_SIDE): the fuzzer then plays the device
 * against the edge's side of the same kind of connection. Its packets are protected with the
 * device's keys and fed to the edge's connection as the edge's socket reader does (after its
 * routing by connection ID); the edge's packets, sent to the tunnel's socket, are read back there
 * for their packet numbers (the tunnel itself reads nothing meanwhile). Stream operands then pick
 * the device's bidirectional streams (requests: echo, SRC, SLEEP, RESET), its unidirectional ones
 * (heartbeats) or the edge's report streams, and the application operation queues an edge report.
 */
#include "fuzz.h"
#include "live.h"

#include "qconn.h"
#include "qconn_test.h"
#include "edge/edge_test.h"
#include "synesis/request.h"
#include "synesis/stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static fz_live L;

/* ---- packet protection (RFC 9001 5) ---- */

typedef struct fz_keys {
    ngtcp2_crypto_ctx ctx;
    uint8_t secret[64];
    size_t secretlen;
    uint8_t key[32], iv[32], hp[32];
    size_t keylen, ivlen;
    ngtcp2_crypto_aead_ctx aead_ctx;
    ngtcp2_crypto_cipher_ctx hp_ctx;
    int has_aead, has_hp;
} fz_keys;

static int expand_label(uint8_t *out, size_t outlen, const ngtcp2_crypto_md *md,
                        const uint8_t *secret, size_t secretlen, const char *label) {
    uint8_t info[64];
    size_t ll = strlen(label), n = 0;
    info[n++] = (uint8_t)(outlen >> 8);
    info[n++] = (uint8_t)outlen;
    info[n++] = (uint8_t)(6 + ll);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, ll);
    n += ll;
    info[n++] = 0;
    return ngtcp2_crypto_hkdf_expand(out, outlen, md, secret, secretlen, info, n);
}

static void keys_free(fz_keys *k) {
    if (k->has_aead)
        ngtcp2_crypto_aead_ctx_free(&k->aead_ctx);
    if (k->has_hp)
        EVP_CIPHER_CTX_free(k->hp_ctx.native_handle);
    k->has_aead = k->has_hp = 0;
}

/* The header protection context as ngtcp2's OpenSSL backend makes it (an EVP_CIPHER_CTX keyed
 * with the HP key, used by ngtcp2_crypto_hp_mask); its own initialiser is not public API. */
static int hp_ctx_init(ngtcp2_crypto_cipher_ctx *c, const ngtcp2_crypto_cipher *cipher,
                       const uint8_t *key) {
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (!x || !EVP_EncryptInit_ex(x, cipher->native_handle, NULL, key, NULL)) {
        EVP_CIPHER_CTX_free(x);
        return -1;
    }
    c->native_handle = x;
    return 0;
}

/* Packet key and IV (and, with hp, the header protection key) from k->secret. */
static void keys_derive(fz_keys *k, int hp) {
    k->keylen = ngtcp2_crypto_aead_keylen(&k->ctx.aead);
    k->ivlen = ngtcp2_crypto_packet_protection_ivlen(&k->ctx.aead);
    FUZZ_CHECK(expand_label(k->key, k->keylen, &k->ctx.md, k->secret, k->secretlen, "quic key") ==
               0);
    FUZZ_CHECK(expand_label(k->iv, k->ivlen, &k->ctx.md, k->secret, k->secretlen, "quic iv") == 0);
    if (k->has_aead)
        ngtcp2_crypto_aead_ctx_free(&k->aead_ctx);
    FUZZ_CHECK(ngtcp2_crypto_aead_ctx_encrypt_init(&k->aead_ctx, &k->ctx.aead, k->key, k->ivlen) ==
               0);
    k->has_aead = 1;
    if (hp) {
        FUZZ_CHECK(expand_label(k->hp, k->keylen, &k->ctx.md, k->secret, k->secretlen, "quic hp") ==
                   0);
        if (k->has_hp)
            EVP_CIPHER_CTX_free(k->hp_ctx.native_handle);
        FUZZ_CHECK(hp_ctx_init(&k->hp_ctx, &k->ctx.hp, k->hp) == 0);
        k->has_hp = 1;
    }
}

/* The next generation of packet keys (key update, RFC 9001 6): a new secret, same HP key. */
static void keys_update(fz_keys *k) {
    uint8_t next[64];
    FUZZ_CHECK(expand_label(next, k->secretlen, &k->ctx.md, k->secret, k->secretlen, "quic ku") ==
               0);
    memcpy(k->secret, next, k->secretlen);
    keys_derive(k, 0);
}

/* ---- per connection ---- */

#define MAX_OFFS 64
static struct {
    syn_qconn *qc;
    uint64_t connects;
    fz_keys tx; /* the edge's 1-RTT keys: what the fuzzer's packets are protected with */
    fz_keys rx; /* the tunnel's (header protection only: to read its packet numbers) */
    int key_phase;
    int stale; /* a well-formed packet of ours was not accepted: reconnect before the next input */
    uint64_t next_pn;
    int64_t client_largest; /* the largest packet number the tunnel sent, -1 = none seen */
    uint64_t uni_next;      /* next unidirectional stream index of the peer we play */
    uint64_t bidi_next;     /* edge side: next bidirectional (request) stream index */
    struct {
        int64_t id;
        uint64_t off;
    } offs[MAX_OFFS];
    size_t noffs;
} C;

static int hs_fd = -1; /* the harness's socket: where the tunnel now sends */

/* The connection under test is alive (and still the one adopted). */
static int alive(void) {
#ifdef FUZZ_EDGE_SIDE
    return C.qc && L.t->qc && syn_edge_newest_qconn(L.edge) == C.qc;
#else
    return C.qc && L.t->qc == C.qc;
#endif
}

/* Where the packets of the connection under test arrive. */
static int peer_fd(void) {
#ifdef FUZZ_EDGE_SIDE
    return L.t->fd;
#else
    return hs_fd;
#endif
}
static struct sockaddr_in hs_addr;
static struct sockaddr_storage other_remote; /* a second "edge" address (migration) */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_live_options o = {.stream_send_buffer = 8192};
    fz_live_init(&L, &o);
    hs_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(hs_fd >= 0);
    memset(&hs_addr, 0, sizeof(hs_addr));
    hs_addr.sin_family = AF_INET;
    hs_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(bind(hs_fd, (struct sockaddr *)&hs_addr, sizeof(hs_addr)) == 0);
    socklen_t sl = sizeof(hs_addr);
    FUZZ_CHECK(getsockname(hs_fd, (struct sockaddr *)&hs_addr, &sl) == 0);
    struct sockaddr_in *o2 = (struct sockaddr_in *)&other_remote;
    o2->sin_family = AF_INET;
    o2->sin_addr.s_addr = htonl(0x7f000002);
    o2->sin_port = htons(9);
    return 0;
}

/* After a (re)connect: keys from the key log; the tunnel's socket now talks to the harness (or,
 * for the edge side, is read by the harness). */
static void adopt_connection(void) {
#ifdef FUZZ_EDGE_SIDE
    syn_qconn *qc = syn_edge_newest_qconn(L.edge);
    FUZZ_CHECK(qc != NULL);
    const uint8_t *tx = L.client_secret, *rx = L.server_secret;
#else
    syn_qconn *qc = L.t->qc;
    FUZZ_CHECK(connect(L.t->fd, (struct sockaddr *)&hs_addr, sizeof(hs_addr)) == 0);
    const uint8_t *tx = L.server_secret, *rx = L.client_secret;
#endif
    ngtcp2_conn *conn = syn_qconn_ngtcp2(qc);
    keys_free(&C.tx);
    keys_free(&C.rx);
    memset(&C, 0, sizeof(C));
    C.qc = qc;
    C.connects = L.connects;
    FUZZ_CHECK(L.secret_len > 0);
    void *native = ngtcp2_conn_get_tls_native_handle(conn);
    FUZZ_CHECK(ngtcp2_crypto_ctx_tls(&C.tx.ctx, native) != NULL);
    C.rx.ctx = C.tx.ctx;
    memcpy(C.tx.secret, tx, L.secret_len);
    memcpy(C.rx.secret, rx, L.secret_len);
    C.tx.secretlen = C.rx.secretlen = L.secret_len;
    keys_derive(&C.tx, 1);
    keys_derive(&C.rx, 1);
    C.next_pn = 1u << 12; /* above anything the peer used */
    C.client_largest = -1;
    /* What was sent before is of no use. */
    char junk[2048];
    while (recv(peer_fd(), junk, sizeof(junk), 0) > 0) {
    }
}

/* Reads what the connection under test sent: the packet numbers, through header protection. */
static void drain(void) {
    uint8_t buf[2048];
    ssize_t n;
    ngtcp2_conn *conn = alive() ? syn_qconn_ngtcp2(C.qc) : NULL;
    while ((n = recv(peer_fd(), buf, sizeof(buf), 0)) > 0) {
        if (!conn || (buf[0] & 0x80))
            continue; /* long headers: not after the handshake */
        const ngtcp2_cid *dcid = ngtcp2_conn_get_dcid2(conn);
        size_t pn_off = 1 + dcid->datalen;
        if ((size_t)n < pn_off + 4 + NGTCP2_HP_SAMPLELEN)
            continue;
        uint8_t mask[NGTCP2_HP_SAMPLELEN];
        if (ngtcp2_crypto_hp_mask(mask, &C.rx.ctx.hp, &C.rx.hp_ctx, buf + pn_off + 4) != 0)
            continue;
        size_t pnlen = (size_t)((buf[0] ^ mask[0]) & 3) + 1;
        uint64_t trunc = 0;
        for (size_t i = 0; i < pnlen; i++)
            trunc = trunc << 8 | (uint8_t)(buf[pn_off + i] ^ mask[1 + i]);
        /* RFC 9000 A.3 */
        int64_t expected = C.client_largest + 1;
        uint64_t win = 1ull << (pnlen * 8), hwin = win / 2, mask_ = win - 1;
        uint64_t cand = ((uint64_t)expected & ~mask_) | trunc;
        if (cand + hwin <= (uint64_t)expected && cand < (1ull << 62) - win)
            cand += win;
        else if (cand > (uint64_t)expected + hwin && cand >= win)
            cand -= win;
        if ((int64_t)cand > C.client_largest && cand < (uint64_t)expected + 4096)
            C.client_largest = (int64_t)cand;
    }
}

/* The tunnel's connection IDs (where the edge's packets are addressed); at most MAX_SCIDS. */
#define MAX_SCIDS 16
static size_t our_cids(ngtcp2_cid *out) {
    ngtcp2_conn *conn = syn_qconn_ngtcp2(C.qc);
    size_t n = ngtcp2_conn_get_scid(conn, NULL);
    ngtcp2_cid *all = calloc(n ? n : 1, sizeof(*all));
    FUZZ_CHECK(all != NULL);
    n = ngtcp2_conn_get_scid(conn, all);
    if (n > MAX_SCIDS)
        n = MAX_SCIDS;
    memcpy(out, all, n * sizeof(*all));
    free(all);
    return n;
}

/* ---- frames ---- */

typedef struct fz_pkt {
    uint8_t b[1400];
    size_t n;
    int any;
} fz_pkt;

static size_t varint_len(uint64_t v) { return v < 64 ? 1 : v < 16384 ? 2 : v < (1u << 30) ? 4 : 8; }

static void put(fz_pkt *p, const void *d, size_t n) {
    if (p->n + n > sizeof(p->b))
        n = sizeof(p->b) - p->n;
    memcpy(p->b + p->n, d, n);
    p->n += n;
    p->any = 1;
}

static void put_u8(fz_pkt *p, uint8_t v) { put(p, &v, 1); }

static void put_varint(fz_pkt *p, uint64_t v) {
    uint8_t b[8];
    v &= (1ull << 62) - 1;
    size_t n = varint_len(v);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    b[0] |= (uint8_t)((n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : 3) << 6);
    put(p, b, n);
}

static uint64_t *stream_off(int64_t id) {
    for (size_t i = 0; i < C.noffs; i++)
        if (C.offs[i].id == id)
            return &C.offs[i].off;
    if (C.noffs == MAX_OFFS)
        C.noffs = 0; /* forget the oldest: its next offset restarts at 0 */
    C.offs[C.noffs].id = id;
    C.offs[C.noffs].off = 0;
    return &C.offs[C.noffs++].off;
}

/* A stream id from an operand byte: 00 the device's bidirectional streams (those the connection
 * has; or 4 * n), 01 the peer's unidirectional ones (low bits 7: a new one; the edge's reports,
 * or, for the edge side, the device's heartbeats), 10 any id, 11 the other kinds. */
#ifdef FUZZ_EDGE_SIDE
#define PEER_UNI 2 /* we play the device: our unidirectional streams are heartbeats */
#define OTHER_KINDS(sel) (((sel)&32) ? 1 : 3)
#else
#define PEER_UNI 3
#define OTHER_KINDS(sel) (((sel)&32) ? 1 : 2)
#endif
static int64_t pick_stream(fz_reader *r) {
    uint8_t sel = fz_u8(r);
    switch (sel >> 6) {
    case 0: {
        int64_t ids[16];
        size_t n = 0;
        if (alive())
            for (syn_qstream *s = syn_qconn_streams(C.qc); s && n < 16; s = syn_qstream_next(s))
                if ((syn_qstream_id(s) & 3) == 0)
                    ids[n++] = syn_qstream_id(s);
#ifdef FUZZ_EDGE_SIDE
        if ((sel & 32) || !n) /* a new request stream */
            return (int64_t)(C.bidi_next++ * 4);
#endif
        return n ? ids[(sel & 63) % n] : (int64_t)(sel & 63) * 4;
    }
    case 1: {
        uint64_t k = sel & 7;
        uint64_t i = k == 7 || C.uni_next == 0 ? C.uni_next++
                     : k < C.uni_next          ? C.uni_next - 1 - k
                                               : 0;
        return (int64_t)(i * 4 + PEER_UNI);
    }
    case 2:
        return (int64_t)(fz_val(r) & ((1ull << 62) - 1));
    default:
        return (int64_t)((sel & 31) * 4 + OTHER_KINDS(sel));
    }
}

/* ---- the application ---- */
#ifndef FUZZ_EDGE_SIDE

#define MAX_OBJ 8
static struct {
    int used, is_stream, ended;
    synesis_request *req;
    synesis_stream *str;
} objs[MAX_OBJ];

static void on_response(synesis_tunnel *t, synesis_request *req, const synesis_response *r,
                        void *ud) {
    (void)t;
    (void)req;
    (void)r;
    int i = (int)(intptr_t)ud;
    FUZZ_CHECK(objs[i].used && !objs[i].ended);
    objs[i].ended = 1;
}

static void s_close(synesis_stream *s, int status, uint64_t app_code, const char *detail,
                    void *ud) {
    (void)detail;
    (void)s;
    (void)status;
    (void)app_code;
    int i = (int)(intptr_t)ud;
    FUZZ_CHECK(objs[i].used && !objs[i].ended);
    objs[i].ended = 1;
}

static void s_data(synesis_stream *s, const uint8_t *data, size_t len, void *ud) {
    (void)data;
    int i = (int)(intptr_t)ud;
    FUZZ_CHECK(objs[i].used && !objs[i].ended);
    if (len & 1) /* answer something, now and then */
        (void)synesis_stream_write(s, "x", 1, NULL);
}

static const synesis_stream_callbacks stream_cb = {
    .struct_size = sizeof(synesis_stream_callbacks), .on_data = s_data, .on_close = s_close};

static void open_object(int is_stream) {
    for (int i = 0; i < MAX_OBJ; i++) {
        if (objs[i].used)
            continue;
        objs[i].used = 1;
        objs[i].ended = 0;
        objs[i].is_stream = is_stream;
        int rv = is_stream ? synesis_tunnel_open_stream(L.t, &stream_cb, (void *)(intptr_t)i,
                                                        &objs[i].str)
                           : synesis_tunnel_request(L.t, "GET", 3, NULL, on_response,
                                                    (void *)(intptr_t)i, &objs[i].req);
        if (rv != 0)
            objs[i].used = 0;
        return;
    }
}

static void app_op(fz_reader *r) {
    uint8_t a = fz_u8(r);
    int i = (a >> 3) % MAX_OBJ;
    switch (a & 7) {
    case 0:
    case 1:
        if (L.t->qc)
            open_object(a & 1);
        break;
    case 2:
        if (objs[i].used && !objs[i].ended && objs[i].is_stream) {
            static const uint8_t junk[4096];
            (void)synesis_stream_write(objs[i].str, junk, fz_u16(r) % sizeof(junk), NULL);
        }
        break;
    case 3:
        if (objs[i].used && !objs[i].ended && objs[i].is_stream)
            (void)synesis_stream_reset(objs[i].str, fz_val(r) & SYN_APP_CODE_MAX);
        break;
    case 4:
        if (objs[i].used && !objs[i].ended && !objs[i].is_stream)
            (void)synesis_request_cancel(objs[i].req);
        break;
    case 5:
        if (objs[i].used && !objs[i].ended && objs[i].is_stream)
            (void)synesis_stream_finish(objs[i].str);
        break;
    default:
        break;
    }
    if (L.t->qc == C.qc) {
        syn_qconn_flush(C.qc);
        drain();
    }
}

static void app_end(void) {
    for (int i = 0; i < MAX_OBJ; i++) {
        if (!objs[i].used)
            continue;
        if (!objs[i].ended) {
            if (objs[i].is_stream)
                (void)synesis_stream_reset(objs[i].str, 0);
            else
                (void)synesis_request_cancel(objs[i].req);
        }
        FUZZ_CHECK(objs[i].ended);
        objs[i].used = 0;
    }
}
#else
/* The edge's application: a report to the device (on a stream of the edge's own). */
static void app_op(fz_reader *r) {
    size_t len;
    const uint8_t *d = fz_bytes(r, fz_u8(r), &len);
    uint8_t frame[300];
    syn_frame_header(frame, SYN_MSG_REPORT, len);
    memcpy(frame + SYN_FRAME_HEADER, d, len);
    (void)syn_edge_send_report(L.edge, "fuzz", frame, SYN_FRAME_HEADER + len);
    if (alive()) {
        syn_qconn_flush(C.qc);
        drain();
    }
}
#endif

/* ---- sending ---- */

static void feed(const uint8_t *d, size_t n, uint8_t ecn, int other) {
    if (!alive())
        return;
#ifdef FUZZ_EDGE_SIDE
    const syn_sockaddr *local = &L.t->remote, *remote = &L.t->local;
#else
    const syn_sockaddr *local = &L.t->local, *remote = &L.t->remote;
#endif
    syn_sockaddr alt;
    if (other) {
        memcpy(&alt.ss, &other_remote, sizeof(struct sockaddr_in));
        alt.len = sizeof(struct sockaddr_in);
        remote = &alt;
    }
    syn_qconn_recv(C.qc, local, remote, ecn, d, n);
    if (alive()) {
        syn_qconn_flush(C.qc); /* as the socket reader does after a batch */
        drain();
    }
}

/* Protects p as a 1-RTT packet and feeds it; flags as for operation 22. */
static void send_packet(fz_pkt *p, uint8_t flags) {
    if (!alive()) {
        p->n = 0;
        p->any = 0;
        return;
    }
    /* A key update the connection refuses (ngtcp2 only takes one once the previous one is
     * confirmed) would leave the harness protecting packets with keys nobody has: the update is
     * taken back then. */
    uint8_t old_secret[64];
    if (flags & 1) {
        memcpy(old_secret, C.tx.secret, sizeof(old_secret));
        keys_update(&C.tx);
        C.key_phase ^= 1;
    }
    ngtcp2_conn_info before;
    ngtcp2_conn_get_conn_info(syn_qconn_ngtcp2(C.qc), &before);
    ngtcp2_cid scids[MAX_SCIDS];
    size_t nscid = our_cids(scids);
    uint8_t pkt[1500];
    size_t h = 0;
    pkt[h++] = (uint8_t)(0x40 | (C.key_phase << 2) | 0x03 | ((flags & 2) ? 0x18 : 0));
    if (nscid) {
        const ngtcp2_cid *cid = &scids[(flags >> 6) % nscid];
        memcpy(pkt + h, cid->data, cid->datalen);
        h += cid->datalen;
    }
    size_t pn_off = h;
    uint64_t pn = C.next_pn++;
    for (int i = 0; i < 4; i++)
        pkt[h++] = (uint8_t)(pn >> (8 * (3 - i)));
    uint8_t nonce[32];
    memcpy(nonce, C.tx.iv, C.tx.ivlen);
    for (size_t i = 0; i < 8; i++)
        nonce[C.tx.ivlen - 1 - i] ^= (uint8_t)(pn >> (8 * i));
    FUZZ_CHECK(ngtcp2_crypto_encrypt(pkt + h, &C.tx.ctx.aead, &C.tx.aead_ctx, p->b, p->n, nonce,
                                     C.tx.ivlen, pkt, h) == 0);
    size_t n = h + p->n + C.tx.ctx.aead.max_overhead;
    uint8_t mask[NGTCP2_HP_SAMPLELEN];
    FUZZ_CHECK(ngtcp2_crypto_hp_mask(mask, &C.tx.ctx.hp, &C.tx.hp_ctx, pkt + pn_off + 4) == 0);
    pkt[0] ^= mask[0] & 0x1f;
    for (int i = 0; i < 4; i++)
        pkt[pn_off + i] ^= mask[1 + i];
    if (flags & 32)
        pkt[n++] = 0x42; /* a trailing byte: the AEAD tag no longer matches */
    feed(pkt, n, (uint8_t)((flags >> 3) & 3), (flags & 4) != 0);
    p->n = 0;
    p->any = 0;
    if (!alive())
        return;
    ngtcp2_conn_info after;
    ngtcp2_conn_get_conn_info(syn_qconn_ngtcp2(C.qc), &after);
    if (after.pkt_recv != before.pkt_recv)
        return; /* accepted (ngtcp2 commits a key update only once the packet is processed) */
    if (flags & 1) {
        memcpy(C.tx.secret, old_secret, sizeof(old_secret));
        keys_derive(&C.tx, 0);
        C.key_phase ^= 1;
    } else if (!(flags & (2 | 4 | 32))) {
        /* A packet meant to be accepted was dropped: the harness is out of step with the
         * connection (a connection ID it retired, a path it no longer accepts), and inputs would
         * be dropped unread. */
        C.stale = 1;
    }
}

/* Makes room for need more bytes in the current packet. */
static void room(fz_pkt *p, size_t need) {
    if (p->n + need > sizeof(p->b))
        send_packet(p, 0);
}

static void frame_op(fz_pkt *p, uint8_t op, fz_reader *r) {
    unsigned kind = op % 25, bit = op >= 25 * 5; /* a second variant for the higher op values */
    uint8_t tmp[1400];
    size_t len;
    const uint8_t *d;
    switch (kind) {
    case 0: {
        size_t n = fz_u8(r) % 64 + 1;
        room(p, n);
        memset(tmp, 0, n);
        put(p, tmp, n);
        break;
    }
    case 1:
        room(p, 1);
        put_u8(p, 0x01);
        break;
    case 2: {
        room(p, 64);
        uint64_t below = fz_val(r), first = fz_val(r), delay = fz_val(r);
        unsigned nr = fz_u8(r) % 4;
        int64_t largest = C.client_largest - (int64_t)below;
        if (largest < 0)
            largest = (int64_t)below; /* nothing seen yet: a guess */
        put_u8(p, bit ? 0x03 : 0x02);
        put_varint(p, (uint64_t)largest);
        put_varint(p, delay);
        put_varint(p, nr);
        put_varint(p, first > (uint64_t)largest ? (uint64_t)largest : first);
        for (unsigned i = 0; i < nr; i++) {
            put_varint(p, fz_val(r));
            put_varint(p, fz_val(r));
        }
        if (bit) {
            put_varint(p, fz_val(r));
            put_varint(p, fz_val(r));
            put_varint(p, fz_val(r));
        }
        break;
    }
    case 3: {
        room(p, 32);
        int64_t id = pick_stream(r);
        uint64_t code = fz_val(r);
        uint64_t *off = stream_off(id);
        uint64_t final = bit ? fz_val(r) : *off;
        put_u8(p, 0x04);
        put_varint(p, (uint64_t)id);
        put_varint(p, code);
        put_varint(p, final);
        break;
    }
    case 4:
        room(p, 24);
        put_u8(p, 0x05);
        put_varint(p, (uint64_t)pick_stream(r));
        put_varint(p, fz_val(r));
        break;
    case 5: {
        uint64_t off = fz_val(r);
        d = fz_bytes(r, fz_u8(r), &len);
        room(p, 20 + len);
        put_u8(p, 0x06);
        put_varint(p, off);
        put_varint(p, len);
        put(p, d, len);
        break;
    }
    case 6:
        d = fz_bytes(r, fz_u8(r), &len);
        room(p, 10 + len);
        put_u8(p, 0x07);
        put_varint(p, len);
        put(p, d, len);
        break;
    case 7: {
        int64_t id = pick_stream(r);
        uint8_t f = fz_u8(r);
        size_t want = fz_u8(r);
        if (f & 4)
            want = (size_t)fz_u16(r) % 1200;
        uint64_t *off = stream_off(id);
        uint64_t o = (f & 2) ? fz_val(r) : *off;
        d = fz_bytes(r, want, &len);
        room(p, 32 + len);
        put_u8(p, (uint8_t)(0x08 | 0x04 | 0x02 | (f & 1)));
        put_varint(p, (uint64_t)id);
        put_varint(p, o);
        put_varint(p, len);
        put(p, d, len);
        if (o + len > *off)
            *off = o + len;
        break;
    }
    case 8:
    case 11:
        room(p, 10);
        put_u8(p, kind == 8 ? 0x10 : 0x14);
        put_varint(p, fz_val(r));
        break;
    case 9:
    case 12:
        room(p, 20);
        put_u8(p, kind == 9 ? 0x11 : 0x15);
        put_varint(p, (uint64_t)pick_stream(r));
        put_varint(p, fz_val(r));
        break;
    case 10:
    case 13:
        room(p, 10);
        put_u8(p, (uint8_t)((kind == 10 ? 0x12 : 0x16) + bit));
        put_varint(p, fz_val(r));
        break;
    case 14: {
        room(p, 60);
        uint64_t seq = fz_val(r), retire = fz_val(r);
        size_t cl = fz_u8(r) % 21;
        uint8_t cid[20], token[16];
        for (size_t i = 0; i < cl; i++)
            cid[i] = fz_u8(r);
        for (size_t i = 0; i < 16; i++)
            token[i] = fz_u8(r);
        put_u8(p, 0x18);
        put_varint(p, seq);
        put_varint(p, retire);
        put_u8(p, (uint8_t)cl);
        put(p, cid, cl);
        put(p, token, 16);
        break;
    }
    case 15:
        room(p, 10);
        put_u8(p, 0x19);
        put_varint(p, fz_val(r));
        break;
    case 16:
    case 17:
        room(p, 9);
        put_u8(p, kind == 16 ? 0x1a : 0x1b);
        for (int i = 0; i < 8; i++)
            tmp[i] = fz_u8(r);
        put(p, tmp, 8);
        break;
    case 18: {
        uint64_t code = fz_val(r), ft = fz_val(r);
        d = fz_bytes(r, fz_u8(r) % 64, &len);
        room(p, 30 + len);
        put_u8(p, bit ? 0x1d : 0x1c);
        put_varint(p, code);
        if (!bit)
            put_varint(p, ft);
        put_varint(p, len);
        put(p, d, len);
        break;
    }
    case 19:
        room(p, 1);
        put_u8(p, 0x1e);
        break;
    case 20:
        d = fz_bytes(r, fz_u8(r), &len);
        room(p, 10 + len);
        put_u8(p, 0x31);
        put_varint(p, len);
        put(p, d, len);
        break;
    case 21:
        d = fz_bytes(r, fz_u8(r), &len);
        room(p, len);
        put(p, d, len);
        break;
    case 22:
        send_packet(p, fz_u8(r));
        break;
    case 23: {
        size_t want = fz_u8(r) + (size_t)(bit ? 256 : 0);
        d = fz_bytes(r, want, &len);
        uint8_t dg[1600];
        size_t n = 0;
        if (bit && alive()) {
            /* A short header with a connection ID of ours: the tunnel tries to decrypt it (or
             * finds a stateless reset). */
            ngtcp2_cid scids[MAX_SCIDS];
            if (our_cids(scids) >= 1) {
                dg[n++] = 0x40;
                memcpy(dg + n, scids[0].data, scids[0].datalen);
                n += scids[0].datalen;
            }
        }
        memcpy(dg + n, d, len);
        feed(dg, n + len, 0, 0);
        break;
    }
    default:
        app_op(r);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint64_t inputs;
    /* A fresh connection when the one under test ended or the harness lost step with it, and
     * every 2048 inputs (what the fuzzer leaves in ngtcp2 stays bounded). */
    if (!C.qc || !alive() || C.stale || ++inputs % 2048 == 0) {
#ifndef FUZZ_EDGE_SIDE
        /* The tunnel's CONNECTION_CLOSE goes to the edge, which then lets go at once. */
        if (L.t->fd >= 0 && L.t->qc == C.qc)
            (void)connect(L.t->fd, (const struct sockaddr *)&L.t->remote.ss, L.t->remote.len);
#endif
        if (C.qc)
            fz_live_reconnect(&L);
        else
            fz_live_ensure(&L);
    }
    if (L.connects != C.connects || !alive())
        adopt_connection();
    fz_reader r = {data, size};
    uint8_t setup = fz_u8(&r);
#ifndef FUZZ_EDGE_SIDE
    for (unsigned i = 0; i < (setup & 3u); i++)
        open_object(0);
    for (unsigned i = 0; i < ((setup >> 2) & 3u); i++)
        open_object(1);
    if (setup & 15) {
        syn_qconn_flush(C.qc); /* the streams open, the requests go out */
        drain();
    }
#else
    (void)setup;
#endif
    fz_pkt p = {.n = 0};
    while (!fz_end(&r) && alive())
        frame_op(&p, fz_u8(&r), &r);
    if (p.any)
        send_packet(&p, 0);
#ifndef FUZZ_EDGE_SIDE
    app_end();
#endif
    if (alive()) {
        syn_qconn_flush(C.qc);
        drain();
    }
    return 0;
}
