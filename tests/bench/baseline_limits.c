/*
 * Machine limits that bound any QUIC stack on this host.
 *
 *   baseline_limits [--quick]
 *
 *   aes128gcm_seal  {"record":1350,"aad":21}   GB/s of AES-128-GCM seal through EVP (OpenSSL
 *                                               3.5), one thread on CPU 0; records/s as extra
 *   udp_gso         {"segment":1350,"per_call":N} Gbit/s delivered over loopback: sender on
 *                                               CPU 0 sendmsg() with UDP_SEGMENT (N bytes a call),
 *                                               receiver child on CPU 1 recvmmsg() with UDP_GRO
 *   udp_nogso       {"segment":1350,"per_call":N} the same bytes a call without GSO: sendmmsg()
 *                                               of single datagrams
 *
 * The receiver is a fork()ed child (single-threaded; CLOCK_PROCESS_CPUTIME_ID is its CPU time).
 * Delivered = bytes received / time from the first to the last datagram received; the sender
 * sends as fast as it can for a fixed time, so the kernel drops what the receiver cannot take
 * (reported as loss_pct). No PKI is needed; --pki/--init are accepted and ignored.
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#define IMPL "limit"
#define RECORD 1350
#define AAD 21 /* a QUIC short header: 1 + 16-byte CID + 4-byte packet number */
#define SEG 1350
#define SEGS_PER_CALL 48 /* 48 * 1350 = 64800 bytes, under the 65507-byte UDP limit */
#define PER_CALL (SEG * SEGS_PER_CALL)
#define RX_BATCH 16
#define RX_BUF 65536

/* ---- AES-128-GCM ---- */

static void bench_aes(const bench_opts *o) {
    int runs = o->quick ? 3 : 5;
    double dur = o->quick ? 0.3 : 1.0;
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char key[16], iv[12], aad[AAD], in[RECORD], out[RECORD + 16], tag[16];
    memset(key, 7, sizeof(key));
    memset(iv, 1, sizeof(iv));
    memset(aad, 2, sizeof(aad));
    memset(in, 3, sizeof(in));
    if (!c || !ctx || EVP_EncryptInit_ex2(ctx, c, key, iv, NULL) != 1)
        bench_ssl_die("AES-128-GCM init");
    double gbs[8], rps[8];
    uint64_t pn = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now(), t = t0;
        uint64_t n = 0;
        /* bounded: checks the clock every 256 records, stops at 1e9 records */
        while (t - t0 < dur && n < 1000000000ull) {
            for (int k = 0; k < 256; k++, n++, pn++) {
                int l1, l2, l3;
                /* nonce = iv XOR packet number, as QUIC does */
                for (int b = 0; b < 8; b++)
                    iv[11 - b] = (unsigned char)(1 ^ (pn >> (8 * b)));
                if (EVP_EncryptInit_ex2(ctx, NULL, NULL, iv, NULL) != 1 ||
                    EVP_EncryptUpdate(ctx, NULL, &l1, aad, sizeof(aad)) != 1 ||
                    EVP_EncryptUpdate(ctx, out, &l2, in, sizeof(in)) != 1 ||
                    EVP_EncryptFinal_ex(ctx, out + l2, &l3) != 1 ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) != 1)
                    bench_ssl_die("AES-128-GCM seal");
            }
            t = bench_now();
        }
        rps[r] = (double)n / (t - t0);
        gbs[r] = rps[r] * RECORD / 1e9;
        bench_log("  aes-128-gcm run %d: %.2f GB/s, %.0f records/s", r, gbs[r], rps[r]);
    }
    bench_sort(rps, (size_t)runs);
    char params[64], extra[96];
    snprintf(params, sizeof(params), "\"record\":%d,\"aad\":%d", RECORD, AAD);
    snprintf(extra, sizeof(extra), ",\"records_per_s\":%.0f,\"threads\":1", rps[runs / 2]);
    bench_emit("aes128gcm_seal", IMPL, params, "GB/s", gbs, (size_t)runs, extra);
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(c);
}

/* ---- UDP loopback ---- */

typedef struct {
    int fd;
} rx_arg;

static int gro_on;

static void udp_receiver(void *argp, bench_srv_result *res) {
    rx_arg *a = argp;
    static unsigned char bufs[RX_BATCH][RX_BUF];
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    double first = 0, last = 0, c0 = 0, bytes = 0, dgrams = 0;
    /* 300 ms without data after the first datagram ends the run; 5 s before it fails it */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(a->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (;;) {
        for (int i = 0; i < RX_BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = RX_BUF;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(a->fd, msgs, RX_BATCH, 0, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* timeout */
        }
        double now = bench_now();
        if (first == 0) {
            first = now;
            c0 = bench_proc_cpu();
            tv.tv_sec = 0;
            tv.tv_usec = 300000;
            setsockopt(a->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        }
        last = now;
        for (int i = 0; i < n; i++) {
            bytes += msgs[i].msg_len;
            /* with GRO one message may hold several datagrams of SEG bytes */
            dgrams += (msgs[i].msg_len + SEG - 1) / SEG;
        }
    }
    res->cpu_s = first > 0 ? bench_proc_cpu() - c0 : 0;
    res->wall_s = last - first;
    res->count = bytes;
    res->count2 = dgrams;
    res->ok = bytes > 0;
}

static void udp_run(const bench_opts *o, int gso, double dur, double *gbps, double *sent_gbps,
                    double *loss, double *tx_cpu_gib, double *rx_cpu_gib) {
    (void)o;
    int rfd_sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int big = 16 << 20, one = 1;
    if (setsockopt(rfd_sock, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) != 0)
        setsockopt(rfd_sock, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    gro_on = setsockopt(rfd_sock, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    if (bind(rfd_sock, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(rfd_sock, (struct sockaddr *)&sa, &len) != 0)
        bench_die("udp bind: %s", strerror(errno));
    rx_arg a = {.fd = rfd_sock};
    int rfd;
    pid_t pid = bench_fork_server(udp_receiver, &a, 60, &rfd);
    close(rfd_sock);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        bench_die("udp connect: %s", strerror(errno));
    usleep(20000); /* let the receiver reach recvmmsg() */
    static unsigned char payload[PER_CALL];
    memset(payload, 'u', sizeof(payload));
    struct iovec iov[SEGS_PER_CALL];
    struct mmsghdr mm[SEGS_PER_CALL];
    for (int i = 0; i < SEGS_PER_CALL; i++) {
        iov[i].iov_base = payload + i * SEG;
        iov[i].iov_len = SEG;
        memset(&mm[i].msg_hdr, 0, sizeof(mm[i].msg_hdr));
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    struct iovec giov = {.iov_base = payload, .iov_len = PER_CALL};
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } cm;
    struct msghdr gmsg = {
        .msg_iov = &giov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
    struct cmsghdr *ch = CMSG_FIRSTHDR(&gmsg);
    ch->cmsg_level = SOL_UDP;
    ch->cmsg_type = UDP_SEGMENT;
    ch->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = SEG;
    memcpy(CMSG_DATA(ch), &seg, sizeof(seg));

    double c0 = bench_proc_cpu(), t0 = bench_now(), t = t0, sent = 0;
    uint64_t calls = 0;
    while (t - t0 < dur && calls < 100000000ull) {
        for (int k = 0; k < 16; k++, calls++) {
            if (gso) {
                ssize_t w = sendmsg(fd, &gmsg, 0);
                if (w < 0 && errno != ENOBUFS && errno != EAGAIN)
                    bench_die("sendmsg with UDP_SEGMENT: %s", strerror(errno));
                if (w > 0)
                    sent += (double)w;
            } else {
                int w = sendmmsg(fd, mm, SEGS_PER_CALL, 0);
                if (w < 0 && errno != ENOBUFS && errno != EAGAIN)
                    bench_die("sendmmsg: %s", strerror(errno));
                if (w > 0)
                    sent += (double)w * SEG;
            }
        }
        t = bench_now();
    }
    double tx_cpu = bench_proc_cpu() - c0;
    close(fd);
    bench_srv_result r;
    if (bench_wait_server(pid, rfd, &r) != 0)
        bench_die("udp receiver failed (nothing received?)");
    double gib = r.count / (double)(1ull << 30);
    *gbps = r.count * 8.0 / r.wall_s / 1e9;
    *sent_gbps = sent * 8.0 / (t - t0) / 1e9;
    *loss = sent > 0 ? 100.0 * (1.0 - r.count / sent) : 0;
    *tx_cpu_gib = tx_cpu / (sent / (double)(1ull << 30));
    *rx_cpu_gib = r.cpu_s / gib;
}

static void bench_udp(const bench_opts *o, int gso) {
    int runs = o->quick ? 3 : 5;
    double dur = o->quick ? 0.5 : 1.0;
    double g[8], s[8], l[8], tc[8], rc[8];
    for (int i = 0; i < runs; i++) {
        udp_run(o, gso, dur, &g[i], &s[i], &l[i], &tc[i], &rc[i]);
        bench_log("  udp %s run %d: delivered %.2f Gbit/s, sent %.2f Gbit/s, loss %.1f%%",
                  gso ? "gso" : "nogso", i, g[i], s[i], l[i]);
    }
    bench_sort(s, (size_t)runs);
    bench_sort(l, (size_t)runs);
    bench_sort(tc, (size_t)runs);
    bench_sort(rc, (size_t)runs);
    char params[96], extra[256];
    snprintf(params, sizeof(params), "\"segment\":%d,\"per_call\":%d", SEG, PER_CALL);
    snprintf(extra, sizeof(extra),
             ",\"sent_gbps\":%.3f,\"loss_pct\":%.2f,\"sender_cpu_s_per_gib\":%.3f,"
             "\"receiver_cpu_s_per_gib\":%.3f,\"gro\":%s,\"seconds_per_run\":%.2f",
             s[runs / 2], l[runs / 2], tc[runs / 2], rc[runs / 2], gro_on ? "true" : "false", dur);
    bench_emit(gso ? "udp_gso" : "udp_nogso", IMPL, params, "Gbit/s", g, (size_t)runs, extra);
}

int main(int argc, char **argv) {
    bench_opts o;
    bench_parse(&o, argc, argv, "Machine limits: AES-128-GCM seal rate, UDP loopback with GSO\n",
                0);
    bench_pin(0);
    bench_stage("limits (whole program)",
                o.quick ? 60 : 300); /* every step is bounded; this bounds the whole */
    double t0 = bench_now();
    bench_log("baseline_limits: %s; sender/cipher on CPU 0, receiver child on CPU 1",
              OpenSSL_version(OPENSSL_VERSION));
    if (bench_want(&o, "aes"))
        bench_aes(&o);
    if (bench_want(&o, "udp")) {
        bench_udp(&o, 1);
        bench_udp(&o, 0);
    }
    bench_log("baseline_limits: done in %.1f s", bench_now() - t0);
    return 0;
}
