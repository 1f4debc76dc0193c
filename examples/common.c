/* Helpers shared by the example programs (see common.h). */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int ex_usage_error(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    return EX_USAGE_STATUS;
}

int ex_bad_option(const char *prog, char **argv, int c) {
    /* getopt_long() has moved optind past the offending word, except inside a cluster of short
     * options ("-xy"), where only optopt names the letter. */
    const char *word = argv[optind - 1];
    if (c == ':')
        return ex_usage_error(prog, "option '%s' needs a value", word);
    if (optopt && !(word[0] == '-' && word[1] == '-'))
        return ex_usage_error(prog, "unknown option '-%c'", optopt);
    return ex_usage_error(prog, "unknown option '%s'", word);
}

int ex_parse_seconds(const char *prog, const char *opt, const char *text, int allow_zero,
                     double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < 0 || (v == 0 && !allow_zero)) {
        ex_usage_error(prog, "%s wants a number of seconds%s, not '%s'", opt,
                       allow_zero ? "" : " above 0", text);
        return -1;
    }
    *out = v;
    return 0;
}

int ex_parse_count(const char *prog, const char *opt, const char *text, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v == 0 || v > SIZE_MAX) {
        ex_usage_error(prog, "%s wants a whole number above 0, not '%s'", opt, text);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

int ex_client_check(const char *prog, const ex_client_options *o) {
    const char *missing = !o->url           ? "--url"
                          : !o->server_name ? "--server-name"
                          : !o->cert        ? "--cert"
                          : !o->key         ? "--key"
                                            : NULL;
    if (missing) {
        ex_usage_error(prog, "%s is required", missing);
        return -1;
    }
    return 0;
}

static void log_stderr(synesis_log_level level, const char *msg, void *user_data) {
    fprintf(stderr, "%s: %s: %s\n", (const char *)user_data,
            level == SYNESIS_LOG_ERROR ? "error" : "warning", msg);
}

void ex_client_config(synesis_tunnel_config *cfg, const ex_client_options *o, const char *prog) {
    cfg->cloud_url = o->url;
    cfg->server_name = o->server_name;
    cfg->cert_path = o->cert;
    cfg->key_path = o->key;
    if (o->ca) {
        /* A private edge: trust its CA only, not every public CA of the system store. */
        cfg->ca_path = o->ca;
        cfg->use_system_trust = 0;
    }
    cfg->log = log_stderr;
    cfg->log_user_data = (void *)prog;
    cfg->log_level = SYNESIS_LOG_WARN;
}

int ex_client_option(ex_client_options *o, int c, const char *arg) {
    switch (c) {
    case 'u':
        o->url = arg;
        return 1;
    case 's':
        o->server_name = arg;
        return 1;
    case 'c':
        o->cert = arg;
        return 1;
    case 'k':
        o->key = arg;
        return 1;
    case 'a':
        o->ca = arg;
        return 1;
    default:
        return 0;
    }
}
