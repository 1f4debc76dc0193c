/*
 * synesis: the device operator's command. `synesis init`, `synesis agent`, `synesis request`,
 * `synesis edge`; `synesis help [TOPIC]`. Installed as one program; called through a link named
 * synesis-init, synesis-agent, synesis-request or synesis-edge it runs that subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "settings.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *f);
    const char *summary;
} subcommand;

static const subcommand commands[] = {
    {"init",    cli_init_main,    cli_init_usage,    "create the device identity (key, certificate, CSR)"},
    {"agent",   cli_agent_main,   cli_agent_usage,   "keep the tunnel to the edge up (the service)"      },
    {"request", cli_request_main, cli_request_usage, "send one request over a tunnel"                    },
    {"check",   cli_check_main,   cli_check_usage,   "diagnose why the tunnel cannot connect"            },
    {"edge",    cli_edge_main,    cli_edge_usage,    "run the reference edge server (the service)"       },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f) {
    fprintf(f, "usage: synesis COMMAND [OPTION...]\n"
               "       synesis help [COMMAND | config | exit-codes]\n"
               "       synesis --version\n"
               "\n"
               "The synesis-tunnel device and edge tools.\n"
               "\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n"
               "`synesis COMMAND --help` (or `synesis help COMMAND`) describes each one.\n"
               "agent and request read " CLI_AGENT_CONF ", edge reads " CLI_EDGE_CONF ";\n"
               "`synesis help config` describes the file format.\n"
               "\n");
    cli_print_exit_codes(f);
}

static void config_help(FILE *f) {
    fprintf(f,
            "Configuration files: " CLI_AGENT_CONF " (synesis agent and synesis request)\n"
            "and " CLI_EDGE_CONF " (synesis edge); --config FILE reads another.\n"
            "\n"
            "  # a comment\n"
            "  cloud_url = quic://edge.example.com:443\n"
            "  heartbeat_interval = 30s      # a comment after a blank\n"
            "  tls_groups = \"X25519MLKEM768:X25519\"\n"
            "\n"
            "- One KEY = VALUE per line; blanks around '=' and at both ends are ignored.\n"
            "- Blank lines are ignored; '#' starts a comment at the start of a line or\n"
            "  after a blank.\n"
            "- A value in double quotes keeps blanks and '#' (no escapes).\n"
            "- Every key may appear once; an unknown key, a value out of its bounds or a\n"
            "  key without a value is an error naming the file, the line and the key, and\n"
            "  the command exits 3 without doing anything.\n"
            "- Seconds: a decimal number, optionally with ms, s, m or h (1.5, 250ms, 2m).\n"
            "  Bytes: a whole number, optionally with K, M or G (powers of 1024).\n"
            "  Yes/no: yes, no, true, false, on, off, 1, 0.\n"
            "- Each key is also an option of its command, --key-name for key_name; an\n"
            "  option overrides the file. A key left out keeps its default (--help shows\n"
            "  the defaults).\n"
            "- `synesis agent --check-config` and `synesis edge --check-config` print the\n"
            "  settings in effect in this format.\n"
            "- Lines of at most %d bytes, files of at most %d bytes; a UTF-8 byte-order\n"
            "  mark and CRLF line ends are accepted.\n",
            CONF_MAX_LINE, CONF_MAX_FILE);
}

static const subcommand *find(const char *name) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int finish(void) { return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE; }

static int help(int argc, char **argv) {
    if (argc < 2) {
        usage(stdout);
        return finish();
    }
    if (argc > 2)
        return cli_usage_error("synesis help", "unexpected argument '%s'", argv[2]);
    const subcommand *c = find(argv[1]);
    if (c)
        c->usage(stdout);
    else if (strcmp(argv[1], "config") == 0)
        config_help(stdout);
    else if (strcmp(argv[1], "exit-codes") == 0)
        cli_print_exit_codes(stdout);
    else
        return cli_usage_error("synesis help", "no help on '%s'", argv[1]);
    return finish();
}

int main(int argc, char **argv) {
    /* Called as synesis-init, synesis-agent, ...: that subcommand, with the same arguments. */
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (strncmp(base, "synesis-", 8) == 0 && find(base + 8)) {
        const subcommand *c = find(base + 8);
        return c->run(argc, argv);
    }
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return help(1, argv + 1);
    if (strcmp(name, "help") == 0)
        return help(argc - 1, argv + 1);
    if (strcmp(name, "--version") == 0) {
        char deps[128];
        synesis_dependency_versions(deps, sizeof(deps));
        printf("synesis %s (%s)\n", synesis_version(), deps);
        return finish();
    }
    const subcommand *c = find(name);
    if (!c)
        return cli_usage_error("synesis", "unknown command '%s'", name);
    return c->run(argc - 1, argv + 1);
}
