/*
 * stream_upload: the streaming API with backpressure. Uploads a file over one stream of the
 * tunnel in chunks, writing only as fast as the send buffer drains; the reference edge echoes
 * the stream, and every echoed byte is compared with the file. Prints the byte counts and the
 * throughput.
 *
 * The writer's rule: synesis_stream_write() may take only part of a chunk (a short write) or
 * none of it (SYNESIS_ERR_WOULD_BLOCK); either way, keep the rest and wait for on_writable.
 *
 * Exit status: 0 the echo matched the file; 1 failed or differed; 2 usage error.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "synesis/synesis.h"

static const char *prog = "stream_upload";

static void usage(void) {
    printf("usage: %s --url URL --server-name NAME --cert FILE --key FILE [--ca FILE]\n"
           "       --file PATH [--chunk BYTES]\n"
           "\n"
           "Streams a file to the edge over a synesis tunnel, reads the echo back and checks it.\n"
           "\n"
           "  --url URL               the edge, e.g. quic://127.0.0.1:4433\n"
           "  --server-name NAME      name the edge's certificate must carry\n"
           "  --cert FILE, --key FILE the device certificate and key (key mode 0600)\n"
           "  --ca FILE               trust only this CA for the edge (default: system store)\n"
           "  --file PATH             the file to upload\n"
           "  --chunk BYTES           bytes read and written at a time (default 65536)\n",
           prog);
}

typedef struct upload {
    struct ev_loop *loop;
    synesis_tunnel *tunnel;
    synesis_stream *stream;
    const char *path;
    FILE *in;     /* the file, read as it is sent */
    FILE *verify; /* the same file through a second handle, read as the echo comes back */
    uint8_t *buf; /* the chunk being sent: buf[off..len) is still to be written */
    size_t chunk, off, len;
    uint8_t *vbuf; /* scratch for the comparison */
    uint64_t sent, received;
    double started;
    int reported; /* we reset the stream after printing why */
    int done;     /* finish() ran */
    int status;   /* the exit status */
} upload;

/* Records the exit status and leaves the loop; main() closes the tunnel once ev_run() has
 * returned. */
static void finish(upload *u, int status) {
    if (u->done)
        return;
    u->done = 1;
    u->status = status;
    ev_break(u->loop, EVBREAK_ALL);
}

/* Writes as much of the file as the stream takes now; on_writable calls it again. */
static void pump(upload *u) {
    for (;;) {
        if (u->off == u->len) { /* the chunk is all written: read the next one */
            u->off = 0;
            u->len = fread(u->buf, 1, u->chunk, u->in);
            if (u->len == 0) {
                if (ferror(u->in)) {
                    fprintf(stderr, "%s: read error on %s\n", prog, u->path);
                    u->reported = 1;
                    synesis_stream_reset(u->stream, 0); /* on_close follows and fails */
                    return;
                }
                synesis_stream_finish(u->stream); /* end of file: FIN after the queued data */
                return;
            }
        }
        size_t accepted = 0;
        int rv = synesis_stream_write(u->stream, u->buf + u->off, u->len - u->off, &accepted);
        if (rv == SYNESIS_ERR_WOULD_BLOCK)
            return; /* the send buffer is full: on_writable follows */
        if (rv != 0) {
            fprintf(stderr, "%s: write: %s\n", prog, synesis_strerror(rv));
            u->reported = 1;
            synesis_stream_reset(u->stream, 0);
            return;
        }
        u->off += accepted;
        u->sent += accepted;
        if (u->off < u->len)
            return; /* a short write: the buffer filled up, on_writable follows */
    }
}

static void on_writable(synesis_stream *s, void *user_data) {
    (void)s;
    pump(user_data);
}

/* Compares the echoed bytes with the next bytes of the file. */
static void on_data(synesis_stream *s, const uint8_t *data, size_t len, void *user_data) {
    upload *u = user_data;
    while (len > 0) {
        size_t want = len < u->chunk ? len : u->chunk;
        size_t got = fread(u->vbuf, 1, want, u->verify);
        if (got != want || memcmp(u->vbuf, data, want) != 0) {
            size_t i = 0;
            while (i < got && u->vbuf[i] == data[i])
                i++;
            fprintf(stderr, "%s: the echo differs from the file at byte %llu\n", prog,
                    (unsigned long long)(u->received + i));
            u->reported = 1;
            synesis_stream_reset(s, 0); /* on_close follows with SYNESIS_ERR_CANCELLED */
            return;
        }
        u->received += want;
        data += want;
        len -= want;
    }
}

static void on_close(synesis_stream *s, int status, uint64_t app_error_code, const char *detail,
                     void *user_data) {
    (void)s;
    upload *u = user_data;
    u->stream = NULL; /* the handle is invalid from here on */
    if (u->done)
        return; /* closed by synesis_tunnel_free() in main(), after finish() */
    if (status != 0) {
        if (!u->reported) {
            fprintf(stderr, "%s: stream: %s: %s", prog, synesis_error_name(status),
                    detail[0] ? detail : synesis_strerror(status));
            if (status == SYNESIS_ERR_STREAM_RESET)
                fprintf(stderr, " (application error %llu)", (unsigned long long)app_error_code);
            fprintf(stderr, "\n");
        }
        finish(u, 1);
        return;
    }
    /* Both sides finished: the echo must have been exactly the file. */
    if (u->received != u->sent || fgetc(u->verify) != EOF) {
        fprintf(stderr, "%s: sent %llu bytes but %llu came back\n", prog,
                (unsigned long long)u->sent, (unsigned long long)u->received);
        finish(u, 1);
        return;
    }
    double secs = ev_time() - u->started;
    printf("sent %llu bytes, received %llu bytes, echo matches the file\n",
           (unsigned long long)u->sent, (unsigned long long)u->received);
    printf("%.3f s, %.2f MiB/s each way\n", secs,
           secs > 0 ? (double)u->sent / (1024.0 * 1024.0) / secs : 0.0);
    finish(u, 0);
}

static void on_state(synesis_tunnel *t, const synesis_tunnel_state *old,
                     const synesis_tunnel_state *st, void *user_data) {
    (void)old;
    upload *u = user_data;
    if (st->kind == SYNESIS_STATE_CONNECTED && !u->stream && u->started == 0) {
        synesis_stream_callbacks cb;
        synesis_stream_callbacks_init(&cb);
        cb.on_data = on_data;
        cb.on_writable = on_writable;
        cb.on_close = on_close;
        int rv = synesis_tunnel_open_stream(t, &cb, u, &u->stream);
        if (rv != 0) {
            fprintf(stderr, "%s: open_stream: %s\n", prog, synesis_strerror(rv));
            finish(u, 1);
            return;
        }
        u->started = ev_time();
        pump(u);
    } else if (st->kind == SYNESIS_STATE_FAILED) {
        fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(st->error), st->error_detail);
        finish(u, 1);
    }
    /* Reconnecting during the upload: the stream's on_close reports CONNECTION_LOST. */
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"url",         required_argument, NULL, 'u'},
        {"server-name", required_argument, NULL, 's'},
        {"cert",        required_argument, NULL, 'c'},
        {"key",         required_argument, NULL, 'k'},
        {"ca",          required_argument, NULL, 'a'},
        {"file",        required_argument, NULL, 'f'},
        {"chunk",       required_argument, NULL, 'n'},
        {"help",        no_argument,       NULL, 'h'},
        {NULL,          0,                 NULL, 0  },
    };
    ex_client_options o = {0};
    upload u = {.loop = EV_DEFAULT, .chunk = 65536, .status = 1};
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            u.path = optarg;
            break;
        case 'n':
            if (ex_parse_count(prog, "--chunk", optarg, &u.chunk))
                return EX_USAGE_STATUS;
            break;
        case 'h':
            usage();
            return 0;
        default:
            if (ex_client_option(&o, c, optarg))
                break; /* --url, --server-name, --cert, --key, --ca */
            return ex_bad_option(prog, argv, c);
        }
    }
    if (optind < argc)
        return ex_usage_error(prog, "unexpected argument '%s'", argv[optind]);
    if (ex_client_check(prog, &o))
        return EX_USAGE_STATUS;
    if (!u.path)
        return ex_usage_error(prog, "--file is required");

    /* A local file: reading it on the loop thread is quick. (A file on a network mount could
     * stall the loop; read such a file on another thread.) */
    if (!(u.in = fopen(u.path, "rb")) || !(u.verify = fopen(u.path, "rb"))) {
        fprintf(stderr, "%s: %s: %s\n", prog, u.path, strerror(errno));
        if (u.in)
            fclose(u.in);
        return 1;
    }
    u.buf = malloc(u.chunk);
    u.vbuf = malloc(u.chunk);
    if (!u.buf || !u.vbuf) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }

    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    ex_client_config(&cfg, &o, prog);
    cfg.heartbeat_interval = 0;        /* not needed for a one-shot transfer */
    cfg.log_level = SYNESIS_LOG_ERROR; /* we report a failure ourselves: skip the warning */
    synesis_tunnel_callbacks cb;
    synesis_tunnel_callbacks_init(&cb);
    cb.on_state = on_state;
    char detail[512] = "";
    int rv = synesis_tunnel_new(&u.tunnel, u.loop, &cfg, &cb, &u, detail, sizeof(detail));
    if (rv != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(rv), detail);
        goto out;
    }
    rv = synesis_tunnel_connect(u.tunnel);
    if (rv != 0)
        fprintf(stderr, "%s: connect: %s\n", prog, synesis_strerror(rv));
    else
        ev_run(u.loop, 0); /* until finish() */

    /* Out of the loop: close gracefully (the edge gets CONNECTION_CLOSE; refused, harmlessly,
     * when the tunnel is already Failed) and free. */
    synesis_tunnel_disconnect(u.tunnel);
    synesis_tunnel_free(u.tunnel);
out:
    free(u.buf);
    free(u.vbuf);
    fclose(u.in);
    fclose(u.verify);
    return u.status;
}
