/*
 * synesis-init: create a device identity (key + certificate, optionally a CSR), or a throwaway
 * test PKI, with the public identity API.
 *
 *   synesis-init [--device-id ID] --out DIR [--ca-cert F --ca-key F] [--csr] [--days N] [--force]
 *   synesis-init --test-pki DIR [--device-id ID]
 *
 * Exit status: 0 done, 1 failed (error name and detail on stderr), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "synesis/synesis.h"

static void usage(FILE *f, const char *argv0) {
    fprintf(
        f,
        "usage: %s [--device-id ID] --out DIR [--ca-cert FILE --ca-key FILE] [--csr] [--days N] "
        "[--force]\n"
        "       %s --test-pki DIR [--device-id ID]\n"
        "       %s --help\n"
        "\n"
        "Creates an ECDSA P-256 device key (DIR/device.key, mode 0600) and an X.509 certificate\n"
        "(DIR/device.pem) with subject CN=device-<ID>, O=SuperInstance: self-signed, or signed by "
        "the\n"
        "given CA. --csr also writes DIR/device.csr for enrolment with an external CA. Existing "
        "files\n"
        "are never replaced without --force. DIR is created (mode 0700) when missing.\n"
        "\n"
        "  --device-id ID   letters, digits and -._:@, at most %d characters; default: the first "
        "16\n"
        "                   hex digits of /etc/machine-id, or else a random UUID\n"
        "  --days N         validity in days (default 365)\n"
        "  --ca-cert FILE   sign with this CA certificate ...\n"
        "  --ca-key FILE    ... and its key (mode 0600; passphrase from "
        "$SYNESIS_CA_KEY_PASSPHRASE)\n"
        "  --test-pki DIR   create a test CA, an edge certificate for localhost/127.0.0.1/::1 and "
        "a\n"
        "                   device certificate signed by it (for tests and demos only)\n",
        argv0, argv0, argv0, SYNESIS_DEVICE_ID_MAX);
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
    fprintf(stderr, "synesis-init: %s: %s: %s\n", what, synesis_error_name(rc),
            detail[0] ? detail : synesis_strerror(rc));
    return 1;
}

/* Prints what a certificate holds; returns 0 or 1. */
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

int main(int argc, char **argv) {
    enum { OPT_CA_CERT = 256, OPT_CA_KEY, OPT_TEST_PKI };
    static const struct option longopts[] = {
        {"device-id", required_argument, NULL, 'i'         },
        {"out",       required_argument, NULL, 'o'         },
        {"ca-cert",   required_argument, NULL, OPT_CA_CERT },
        {"ca-key",    required_argument, NULL, OPT_CA_KEY  },
        {"csr",       no_argument,       NULL, 'c'         },
        {"days",      required_argument, NULL, 'd'         },
        {"force",     no_argument,       NULL, 'f'         },
        {"test-pki",  required_argument, NULL, OPT_TEST_PKI},
        {"help",      no_argument,       NULL, 'h'         },
        {NULL,        0,                 NULL, 0           },
    };
    synesis_identity_options opts;
    synesis_identity_options_init(&opts);
    const char *out = NULL, *test_pki = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "i:o:cd:fh", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            opts.device_id = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case OPT_CA_CERT:
            opts.ca_cert_file = optarg;
            break;
        case OPT_CA_KEY:
            opts.ca_key_file = optarg;
            break;
        case 'c':
            opts.write_csr = 1;
            break;
        case 'd': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 1 || v > 36525) {
                fprintf(stderr, "synesis-init: --days wants a number of days from 1 to 36525\n");
                return 2;
            }
            opts.days = (int)v;
            break;
        }
        case 'f':
            opts.overwrite = 1;
            break;
        case OPT_TEST_PKI:
            test_pki = optarg;
            break;
        case 'h':
            usage(stdout, argv[0]);
            return 0;
        default:
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (optind < argc || (!out == !test_pki) || (!opts.ca_cert_file != !opts.ca_key_file) ||
        (test_pki && (opts.ca_cert_file || opts.write_csr || opts.overwrite || opts.days != 365))) {
        if (optind < argc)
            fprintf(stderr, "synesis-init: unexpected argument '%s'\n", argv[optind]);
        else if (!out == !test_pki)
            fprintf(stderr, "synesis-init: give either --out DIR or --test-pki DIR\n");
        else if (!opts.ca_cert_file != !opts.ca_key_file)
            fprintf(stderr, "synesis-init: --ca-cert and --ca-key go together\n");
        else
            fprintf(stderr, "synesis-init: --test-pki takes only --device-id\n");
        usage(stderr, argv[0]);
        return 2;
    }

    char derived[64];
    if (!opts.device_id) {
        if (default_device_id(derived, sizeof(derived)) != 0) {
            fprintf(stderr, "synesis-init: cannot derive a device id; pass --device-id\n");
            return 1;
        }
        opts.device_id = derived;
    }
    char detail[512];
    int rc = synesis_identity_validate_device_id(opts.device_id, detail, sizeof(detail));
    if (rc) {
        fprintf(stderr, "synesis-init: %s\n", detail);
        return 2;
    }
    opts.ca_key_passphrase = getenv("SYNESIS_CA_KEY_PASSPHRASE");

    char a[PATH_MAX], b[PATH_MAX];
    if (test_pki) {
        rc = synesis_identity_create_test_pki(test_pki, opts.device_id, detail, sizeof(detail));
        if (rc)
            return fail(rc, test_pki, detail);
        printf("test PKI in %s (device id %s)\n", test_pki, opts.device_id);
        static const char *const names[][3] = {
            {"CA",     "ca.pem",     "ca.key"    },
            {"edge",   "edge.pem",   "edge.key"  },
            {"device", "device.pem", "device.key"}
        };
        for (int i = 0; i < 3; i++) {
            if (join(a, test_pki, names[i][1]) || join(b, test_pki, names[i][2]))
                return fail(SYNESIS_ERR_INVALID_ARGUMENT, test_pki, "path too long");
            if (show(names[i][0], a, i == 1))
                return 1;
            printf("  private key: %s (mode 0600)\n", b);
        }
        return 0;
    }

    rc = synesis_identity_generate(&opts, out, detail, sizeof(detail));
    if (rc)
        return fail(rc, out, detail);
    if (join(a, out, opts.cert_name) || join(b, out, opts.key_name))
        return fail(SYNESIS_ERR_INVALID_ARGUMENT, out, "path too long");
    printf("device identity in %s (device id %s)\n", out, opts.device_id);
    if (show("device", a, 0))
        return 1;
    printf("  private key: %s (mode 0600)\n", b);
    if (opts.write_csr) {
        if (join(a, out, opts.csr_name))
            return fail(SYNESIS_ERR_INVALID_ARGUMENT, out, "path too long");
        printf("  CSR:         %s\n", a);
    }
    return 0;
}
