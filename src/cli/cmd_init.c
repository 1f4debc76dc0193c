/*
 * synesis init: creates the device identity (key, certificate, optionally a CSR), or a throwaway
 * test PKI, with the public identity API (examples/synesis-init.c is the same program to copy).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli.h"
#include "settings.h"

static const char *const prog = "synesis init";

void cli_init_usage(FILE *f) {
    fprintf(f,
            "usage: synesis init [--out DIR] [--device-id ID] [--ca-cert FILE --ca-key FILE]\n"
            "                    [--csr] [--days N] [--force]\n"
            "       synesis init --test-pki DIR [--device-id ID]\n"
            "\n"
            "Creates the device identity: an ECDSA P-256 key (DIR/device.key, mode 0600) and an\n"
            "X.509 certificate (DIR/device.pem) with subject CN=device-<ID>, O=SuperInstance,\n"
            "self-signed or signed by the given CA. --csr also writes DIR/device.csr, to have\n"
            "the certificate signed by an external CA. Existing files are never replaced\n"
            "without --force. DIR is created (mode 0700) when missing. Run it as the user of\n"
            "the service (runuser -u synesis -- synesis init), so the key is that user's.\n"
            "\n"
            "  --out DIR         where to write (default " CLI_STATE_DIR ", where the agent's\n"
            "                    default cert and key are)\n"
            "  --device-id ID    letters, digits and -._:@, at most %d characters; default:\n"
            "                    the first 16 hex digits of /etc/machine-id, else a random UUID\n"
            "  --days N          validity in days, 1 to 36525 (default 365)\n"
            "  --ca-cert FILE    sign with this CA certificate ...\n"
            "  --ca-key FILE     ... and its key (mode 0600; an encrypted key's passphrase\n"
            "                    from $SYNESIS_CA_KEY_PASSPHRASE)\n"
            "  --csr             also write a certificate signing request\n"
            "  --force           replace existing files\n"
            "  --test-pki DIR    create a test CA, an edge certificate for localhost,\n"
            "                    127.0.0.1 and ::1, and a device certificate signed by the CA\n"
            "                    (for tests and demos only)\n"
            "  --help            this text\n"
            "\n"
            "Prints what it wrote: subjects, validity, SHA-256 fingerprints, and the edge's\n"
            "SPKI pin (for spki_pins). Exit status: 0 done, 2 usage, 4 an identity error\n"
            "(e.g. SYNESIS_ERR_FILE_EXISTS), 1 another failure.\n",
            SYNESIS_DEVICE_ID_MAX);
}

/* First 16 hex digits of /etc/machine-id, or a random version-4 UUID. */
static int default_device_id(char *out, size_t len) {
    FILE *f = fopen("/etc/machine-id", "r");
    if (f) {
        char line[64] = "";
        int ok = fgets(line, sizeof(line), f) != NULL;
        fclose(f);
        size_t n = 0;
        while (ok && n < 16 &&
               ((line[n] >= '0' && line[n] <= '9') || (line[n] >= 'a' && line[n] <= 'f')))
            n++;
        if (n == 16) {
            snprintf(out, len, "%.16s", line);
            return 0;
        }
    }
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return -1;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
    return 0;
}

static void utc(int64_t t, char *out, size_t len) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(out, len, "%lld", (long long)t);
}

static int fail(int rc, const char *what, const char *detail) {
    fprintf(stderr, "%s: %s: %s: %s\n", prog, what, synesis_error_name(rc),
            detail[0] ? detail : synesis_strerror(rc));
    return cli_exit_for_error(rc);
}

/* Prints what a certificate holds; returns 0 or an exit status. */
static int show(const char *label, const char *path, int with_pin) {
    synesis_identity_info *info = NULL;
    char detail[512], from[40], to[40];
    int rc = synesis_identity_inspect(path, &info, detail, sizeof(detail));
    if (rc)
        return fail(rc, path, detail);
    utc(info->not_before, from, sizeof(from));
    utc(info->not_after, to, sizeof(to));
    printf("%s certificate: %s\n", label, path);
    printf("  subject:     %s\n", info->subject);
    printf("  issuer:      %s%s\n", info->issuer, info->self_signed ? " (self-signed)" : "");
    if (info->device_id[0])
        printf("  device id:   %s\n", info->device_id);
    printf("  key type:    %s\n", info->key_type);
    printf("  valid:       %s .. %s\n", from, to);
    printf("  SHA-256:     %s\n", info->fingerprint_sha256);
    if (with_pin)
        printf("  SPKI pin:    %s\n", info->spki_pin);
    synesis_identity_info_free(info);
    return 0;
}

static int join(char *out, const char *dir, const char *name) {
    return snprintf(out, PATH_MAX, "%s/%s", dir, name) < PATH_MAX ? 0 : -1;
}

enum { F_DEVICE_ID = 1, F_OUT, F_CA_CERT, F_CA_KEY, F_CSR, F_DAYS, F_FORCE, F_TEST_PKI };

typedef struct init_args {
    synesis_identity_options opts;
    const char *out, *test_pki;
    int days_given;
} init_args;

static int on_flag(void *ctx, int id, const char *arg) {
    init_args *a = ctx;
    switch (id) {
    case F_DEVICE_ID:
        a->opts.device_id = arg;
        break;
    case F_OUT:
        a->out = arg;
        break;
    case F_CA_CERT:
        a->opts.ca_cert_file = arg;
        break;
    case F_CA_KEY:
        a->opts.ca_key_file = arg;
        break;
    case F_CSR:
        a->opts.write_csr = 1;
        break;
    case F_DAYS: {
        char *end;
        errno = 0;
        long v = strtol(arg, &end, 10);
        if (errno || *end || end == arg || v < 1 || v > 36525)
            return cli_usage_error(prog, "--days wants a number of days from 1 to 36525, not '%s'",
                                   arg);
        a->opts.days = (int)v;
        a->days_given = 1;
        break;
    }
    case F_FORCE:
        a->opts.overwrite = 1;
        break;
    case F_TEST_PKI:
        a->test_pki = arg;
        break;
    }
    return -1;
}

int cli_init_main(int argc, char **argv) {
    static const cli_flag flags[] = {
        {"device-id", 1, F_DEVICE_ID},
        {"out",       1, F_OUT      },
        {"ca-cert",   1, F_CA_CERT  },
        {"ca-key",    1, F_CA_KEY   },
        {"csr",       0, F_CSR      },
        {"days",      1, F_DAYS     },
        {"force",     0, F_FORCE    },
        {"test-pki",  1, F_TEST_PKI },
    };
    init_args a = {0};
    synesis_identity_options_init(&a.opts);
    cli_command cmd = {.prog = prog,
                       .flags = flags,
                       .nflags = sizeof(flags) / sizeof(flags[0]),
                       .on_flag = on_flag,
                       .ctx = &a,
                       .usage = cli_init_usage};
    int status = cli_parse(&cmd, argc, argv, NULL);
    if (status >= 0)
        return status;
    synesis_identity_options *opts = &a.opts;
    if (a.test_pki && a.out)
        return cli_usage_error(prog, "give either --out DIR or --test-pki DIR");
    if (!opts->ca_cert_file != !opts->ca_key_file)
        return cli_usage_error(prog, "--ca-cert and --ca-key go together");
    if (a.test_pki && (opts->ca_cert_file || opts->write_csr || opts->overwrite || a.days_given))
        return cli_usage_error(prog, "--test-pki takes only --device-id");
    const char *out = a.out ? a.out : CLI_STATE_DIR;

    char derived[64];
    if (!opts->device_id) {
        if (default_device_id(derived, sizeof(derived)) != 0) {
            fprintf(stderr, "%s: cannot derive a device id; pass --device-id\n", prog);
            return CLI_EXIT_FAILURE;
        }
        opts->device_id = derived;
    }
    char detail[512];
    int rc = synesis_identity_validate_device_id(opts->device_id, detail, sizeof(detail));
    if (rc)
        return cli_usage_error(prog, "--device-id: %s", detail);
    opts->ca_key_passphrase = getenv("SYNESIS_CA_KEY_PASSPHRASE");

    char p1[PATH_MAX], p2[PATH_MAX];
    if (a.test_pki) {
        rc = synesis_identity_create_test_pki(a.test_pki, opts->device_id, detail, sizeof(detail));
        if (rc)
            return fail(rc, a.test_pki, detail);
        printf("test PKI in %s (device id %s)\n", a.test_pki, opts->device_id);
        static const char *const names[][3] = {
            {"CA",     "ca.pem",     "ca.key"    },
            {"edge",   "edge.pem",   "edge.key"  },
            {"device", "device.pem", "device.key"}
        };
        for (int i = 0; i < 3; i++) {
            if (join(p1, a.test_pki, names[i][1]) || join(p2, a.test_pki, names[i][2]))
                return fail(SYNESIS_ERR_INVALID_ARGUMENT, a.test_pki, "path too long");
            if ((status = show(names[i][0], p1, i == 1)) != 0)
                return status;
            printf("  private key: %s (mode 0600)\n", p2);
        }
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    }

    rc = synesis_identity_generate(opts, out, detail, sizeof(detail));
    if (rc)
        return fail(rc, out, detail);
    if (join(p1, out, opts->cert_name) || join(p2, out, opts->key_name))
        return fail(SYNESIS_ERR_INVALID_ARGUMENT, out, "path too long");
    printf("device identity in %s (device id %s)\n", out, opts->device_id);
    if ((status = show("device", p1, 0)) != 0)
        return status;
    printf("  private key: %s (mode 0600)\n", p2);
    if (opts->write_csr) {
        if (join(p1, out, opts->csr_name))
            return fail(SYNESIS_ERR_INVALID_ARGUMENT, out, "path too long");
        printf("  CSR:         %s\n", p1);
    }
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
