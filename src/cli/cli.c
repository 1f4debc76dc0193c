/* What the subcommands of `synesis` share (see cli.h). */
#include "cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_exit_for_error(int err) {
    if (err <= -100 && err > -200)
        return CLI_EXIT_IDENTITY;
    if (err <= -200 && err > -300)
        return CLI_EXIT_CONNECTION;
    if (err <= -300 && err > -400)
        return CLI_EXIT_REQUEST;
    return err ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

void cli_print_exit_codes(FILE *f) {
    fprintf(f, "Exit status of every subcommand:\n"
               "  0  done; agent and edge: stopped by SIGINT or SIGTERM (or --duration)\n"
               "  1  a failure outside the classes below (out of memory, a system call,\n"
               "     output that cannot be written)\n"
               "  2  usage: an unknown option, a missing or malformed value on the\n"
               "     command line\n"
               "  3  configuration: the file cannot be read or has an error (file, line\n"
               "     and key on stderr), or the settings taken together are refused\n"
               "  4  identity: a certificate, key or CA problem (SYNESIS_ERR_* -100 to\n"
               "     -199: missing file, key permissions, expired, mismatched key...)\n"
               "  5  connection: the tunnel could not connect or gave up reconnecting,\n"
               "     the edge could not bind (SYNESIS_ERR_* -200 to -299)\n"
               "  6  request: the request failed, timed out or was reset\n"
               "     (SYNESIS_ERR_* -300 to -399)\n"
               "check: 0 only when the tunnel can come up; else the class above of its\n"
               "first failed check (3 cloud_url or nothing to trust the edge with; 4\n"
               "files, certificate, clock; 5 dns, udp, trust)\n"
               "Errors print their SYNESIS_ERR_* name and detail on stderr. A service\n"
               "unit should not restart on 2 or 3 (RestartPreventExitStatus=2 3): only\n"
               "an operator fixes those.\n");
}

int cli_usage_error(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    return CLI_EXIT_USAGE;
}

void cli_report(const char *prog, int err, const char *detail) {
    fprintf(stderr, "%s: %s: %s\n", prog, synesis_error_name(err),
            detail && detail[0] ? detail : synesis_strerror(err));
}

void cli_log_stderr(synesis_log_level level, const char *msg, void *user_data) {
    static const char *const names[] = {"error", "warning", "info", "debug", "trace"};
    static const int prio[] = {3, 4, 6, 7, 7}; /* syslog: err, warning, info, debug */
    int l = level >= SYNESIS_LOG_ERROR && level <= SYNESIS_LOG_TRACE ? (int)level : 0;
    if (getenv("JOURNAL_STREAM"))
        fprintf(stderr, "<%d>", prio[l]);
    fprintf(stderr, "%s: %s: %s\n", (const char *)user_data, names[l], msg);
}

enum { ID_CONFIG = 256, ID_HELP = 257, ID_KEY = 1000 };

int cli_parse(const cli_command *cmd, int argc, char **argv, const char **config_used) {
    size_t nkeys = cmd->table ? cmd->table->n : 0;
    size_t nopts = nkeys * 2 + cmd->nflags + 3;
    struct option *opts = calloc(nopts, sizeof(*opts));
    char(*names)[64] = calloc(nkeys ? nkeys : 1, sizeof(*names));
    /* The flags that set keys, in order, applied after the file. */
    struct {
        const conf_key *k;
        const char *arg;
    } *sets = calloc((size_t)argc + 1, sizeof(*sets));
    size_t nsets = 0, o = 0;
    const char *config = NULL;
    int status = -1;
    if (config_used)
        *config_used = NULL;
    if (!opts || !names || !sets) {
        fprintf(stderr, "%s: out of memory\n", cmd->prog);
        status = CLI_EXIT_FAILURE;
        goto out;
    }
    for (size_t i = 0; i < nkeys; i++) {
        const conf_key *k = &cmd->table->keys[i];
        snprintf(names[i], sizeof(names[i]), "%s", k->name);
        for (char *p = names[i]; *p; p++)
            if (*p == '_')
                *p = '-';
        opts[o++] = (struct option){names[i], required_argument, NULL, ID_KEY + (int)i};
        if (k->alias)
            opts[o++] = (struct option){k->alias, required_argument, NULL, ID_KEY + (int)i};
    }
    for (size_t i = 0; i < cmd->nflags; i++)
        opts[o++] = (struct option){cmd->flags[i].name,
                                    cmd->flags[i].has_arg ? required_argument : no_argument, NULL,
                                    cmd->flags[i].id};
    if (cmd->table)
        opts[o++] = (struct option){"config", required_argument, NULL, ID_CONFIG};
    opts[o++] = (struct option){"help", no_argument, NULL, ID_HELP};

    optind = 0; /* a fresh scan (glibc), whatever ran getopt before */
    int c;
    while (status < 0 && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c == ID_HELP || c == 'h') {
            cmd->usage(stdout);
            status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
        } else if (c == ID_CONFIG) {
            config = optarg;
        } else if (c >= ID_KEY && (size_t)(c - ID_KEY) < nkeys) {
            sets[nsets].k = &cmd->table->keys[c - ID_KEY];
            sets[nsets++].arg = optarg;
        } else if (c > 0 && c < 256 && c != '?' && c != ':') {
            status = cmd->on_flag(cmd->ctx, c, optarg);
        } else {
            /* getopt_long has moved optind past the offending word, except inside a cluster of
             * short options ("-xy"), where only optopt names the letter. */
            const char *word = argv[optind - 1];
            if (c == ':')
                status = cli_usage_error(cmd->prog, "option '%s' needs a value", word);
            else if (optopt && !(word[0] == '-' && word[1] == '-'))
                status = cli_usage_error(cmd->prog, "unknown option '-%c'", optopt);
            else
                status = cli_usage_error(cmd->prog, "unknown option '%s'", word);
        }
    }
    if (status >= 0)
        goto out;
    if (optind < argc) {
        status = cli_usage_error(cmd->prog, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (cmd->table) {
        char err[1024];
        const char *path = config ? config : cmd->default_config;
        int rv = conf_load(cmd->table, cmd->settings, path, !config, err, sizeof(err));
        if (rv < 0) {
            fprintf(stderr, "%s: %s\n", cmd->prog, err);
            status = CLI_EXIT_CONFIG;
            goto out;
        }
        if (rv == 0 && config_used)
            *config_used = path;
    }
    for (size_t i = 0; i < nsets; i++) {
        char why[512];
        if (conf_set(sets[i].k, cmd->settings, sets[i].arg, why, sizeof(why)) != 0) {
            char flag[64];
            snprintf(flag, sizeof(flag), "%s", sets[i].k->name);
            for (char *p = flag; *p; p++)
                if (*p == '_')
                    *p = '-';
            status = cli_usage_error(cmd->prog, "--%s: %s", flag, why);
            goto out;
        }
    }
out:
    free(opts);
    free(names);
    free(sets);
    return status;
}
