/* The reference edge in a child process (see soak_edge.h). */
#include "soak_edge.h"

#include <errno.h>
#include <fcntl.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "synesis/identity.h"

double soak_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *soak_path(const char *dir, const char *name) {
    static char bufs[8][600];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

long soak_status_kb(const char *key) {
    char buf[4096];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char pat[64];
    snprintf(pat, sizeof(pat), "\n%s:", key);
    const char *p = strstr(buf, pat);
    long v = -1;
    if (p && sscanf(p + strlen(pat), " %ld", &v) != 1)
        v = -1;
    return v;
}

typedef struct until_ctx {
    int (*pred)(void *);
    void *ud;
    int done;
} until_ctx;

/* Lowest priority prepare watcher: sees what the library's own prepare watchers did. */
static void check_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)revents;
    until_ctx *c = w->data;
    if (c->pred && c->pred(c->ud)) {
        c->done = 1;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

int soak_run_until(struct ev_loop *loop, int (*pred)(void *), void *ud, double timeout) {
    if (pred && pred(ud))
        return 1;
    until_ctx c = {pred, ud, 0};
    ev_prepare chk;
    ev_prepare_init(&chk, check_cb);
    ev_set_priority(&chk, EV_MINPRI);
    chk.data = &c;
    ev_prepare_start(loop, &chk);
    ev_timer dl;
    ev_timer_init(&dl, deadline_cb, timeout, 0.);
    ev_timer_start(loop, &dl);
    ev_now_update(loop);
    ev_run(loop, 0);
    ev_prepare_stop(loop, &chk);
    ev_timer_stop(loop, &dl);
    return c.done || (pred && pred(ud));
}

void soak_run_for(struct ev_loop *loop, double seconds) {
    soak_run_until(loop, NULL, NULL, seconds);
}

int soak_run_idle(struct ev_loop *loop, double timeout) {
    ev_timer dl;
    ev_timer_init(&dl, deadline_cb, timeout, 0.);
    ev_timer_start(loop, &dl);
    ev_unref(loop); /* the deadline alone does not keep the loop running */
    ev_now_update(loop);
    ev_run(loop, 0);
    int idle = ev_is_active(&dl);
    ev_ref(loop);
    ev_timer_stop(loop, &dl);
    return idle;
}

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "soak edge: pipe write failed\n");
            _exit(3);
        }
        c += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "soak edge: the edge process is gone\n");
            exit(1);
        }
        c += r;
        n -= (size_t)r;
    }
}

/* ---- the child ---- */

typedef struct child_ctx {
    syn_edge *edge;
    const char *device_id;
    int ctl, resp;
} child_ctx;

static void ctl_cb(struct ev_loop *loop, ev_io *w, int revents) {
    (void)revents;
    child_ctx *cc = w->data;
    char cmd;
    ssize_t r = read(cc->ctl, &cmd, 1);
    if (r < 0 && errno == EINTR)
        return;
    if (r <= 0 || cmd == 'Q') {
        ev_io_stop(loop, w);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    char detail[512] = "";
    switch (cmd) {
    case 'K':
        syn_edge_kick(cc->edge, cc->device_id);
        break;
    case 'G':
    case 'H':
        syn_edge_stop(cc->edge, cmd == 'G');
        if (syn_edge_start(cc->edge, detail) != 0) {
            fprintf(stderr, "soak edge: restart: %s\n", detail);
            _exit(2);
        }
        break;
    case 'S': {
        syn_edge_stats st;
        syn_edge_get_stats(cc->edge, &st);
        long rss = soak_status_kb("VmRSS");
        write_all(cc->resp, &st, sizeof(st));
        write_all(cc->resp, &rss, sizeof(rss));
        return;
    }
    default:
        break;
    }
    write_all(cc->resp, &cmd, 1); /* done */
}

static void edge_child(const soak_edge_options *o, int ctl, int resp) {
    char dir[512] = {0}; /* sent whole to the parent */
    const char *base = getenv("SYNESIS_TEST_TMP");
    if (!base || !*base)
        base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/synesis-soak-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("soak edge: mkdtemp");
        _exit(2);
    }
    char detail[512] = "";
    int rv = synesis_identity_create_test_pki(dir, o->device_id, detail, sizeof(detail));
    if (rv != 0) {
        fprintf(stderr, "soak edge: test PKI: %s: %s\n", synesis_error_name(rv), detail);
        _exit(2);
    }
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    ec.listen = "127.0.0.1:0";
    ec.cert_file = soak_path(dir, "edge.pem");
    ec.key_file = soak_path(dir, "edge.key");
    ec.ca_file = soak_path(dir, "ca.pem");
    ec.idle_timeout = o->idle_timeout;
    ec.handshake_timeout = o->hs_timeout;
    if (o->retry_never)
        ec.retry_threshold = SYN_EDGE_RETRY_NEVER;
    if (o->log)
        ec.log_file = stderr;
    child_ctx cc = {NULL, o->device_id, ctl, resp};
    rv = syn_edge_new(&cc.edge, loop, &ec, detail);
    if (rv == 0)
        rv = syn_edge_start(cc.edge, detail);
    if (rv != 0) {
        fprintf(stderr, "soak edge: %s: %s\n", synesis_error_name(rv), detail);
        _exit(2);
    }
    uint16_t port = syn_edge_port(cc.edge);
    write_all(resp, &port, sizeof(port));
    write_all(resp, dir, sizeof(dir));
    ev_io w;
    ev_io_init(&w, ctl_cb, ctl, EV_READ);
    w.data = &cc;
    ev_io_start(loop, &w);
    ev_run(loop, 0);
    syn_edge_free(cc.edge);
    ev_loop_destroy(loop);
    exit(0); /* not _exit: OpenSSL's cleanup, and the leak check of sanitizers and valgrind */
}

void soak_edge_start(soak_edge *se, const soak_edge_options *opts) {
    soak_edge_options o = {"soak", 5.0, 3.0, 0, 0};
    if (opts) {
        o = *opts;
        if (!o.device_id)
            o.device_id = "soak";
        if (!(o.idle_timeout > 0))
            o.idle_timeout = 5.0;
        if (!(o.hs_timeout > 0))
            o.hs_timeout = 3.0;
    }
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) {
        perror("pipe");
        exit(1);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        edge_child(&o, to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    se->pid = pid;
    se->ctl = to_child[1];
    se->resp = from_child[0];
    read_all(se->resp, &se->port, sizeof(se->port));
    read_all(se->resp, se->pki_dir, sizeof(se->pki_dir));
    se->pki_dir[sizeof(se->pki_dir) - 1] = 0;
}

static void command(soak_edge *se, char cmd) {
    if (write(se->ctl, &cmd, 1) != 1) {
        fprintf(stderr, "soak edge: the edge process is gone\n");
        exit(1);
    }
    char ack;
    read_all(se->resp, &ack, 1);
}

void soak_edge_kick(soak_edge *se) { command(se, 'K'); }

void soak_edge_restart(soak_edge *se, int graceful) { command(se, graceful ? 'G' : 'H'); }

void soak_edge_stats(soak_edge *se, syn_edge_stats *st, long *rss_kb) {
    char cmd = 'S';
    if (write(se->ctl, &cmd, 1) != 1) {
        fprintf(stderr, "soak edge: the edge process is gone\n");
        exit(1);
    }
    long rss;
    read_all(se->resp, st, sizeof(*st));
    read_all(se->resp, &rss, sizeof(rss));
    if (rss_kb)
        *rss_kb = rss;
}

int soak_edge_stop(soak_edge *se) {
    char cmd = 'Q';
    (void)!write(se->ctl, &cmd, 1);
    close(se->ctl);
    close(se->resp);
    int status = 0;
    while (waitpid(se->pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    fprintf(stderr, "soak edge: the edge process ended with %s %d (a sanitizer report?)\n",
            WIFEXITED(status) ? "exit status" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return -1;
}
