/* The configuration files of the synesis command (src/cli/conf.c, settings.c): syntax, unknown
 * keys, duplicates, bounds and units of every value type, error messages naming file, line and
 * key, the printed form read back, and the settings' translation into the library config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "settings.h"

/* A small table of every type. */
typedef struct demo {
    char *name;
    double secs;
    double ratio;
    uint64_t size;
    uint64_t count;
    uint64_t payload;
    int flag;
    int color;
} demo;

static const char *const colors[] = {"red", "green", "blue", NULL};

static int check_no_x(const char *v, char *err, size_t len) {
    if (strchr(v, 'x')) {
        snprintf(err, len, "must not contain x");
        return -1;
    }
    return 0;
}

static const conf_key demo_keys[] = {
    {.name = "name",    .type = CONF_STRING,  .offset = offsetof(demo, name),                               .check = check_no_x},
    {.name = "secs",    .type = CONF_SECONDS, .offset = offsetof(demo, secs),                               .min = 0.5,          .max = 7200},
    {.name = "ratio",                 .type = CONF_NUMBER,                       .offset = offsetof(demo,           ratio), .min = 0,    .max = 1},
    {.name = "size",
     .type = CONF_BYTES,
     .offset = offsetof(demo,                                       size),
     .umin = 1,
     .umax = UINT64_MAX},
    {.name = "count",
     .type = CONF_COUNT,
     .offset = offsetof(demo,                                             count),
     .umin = 0,
     .umax = 1000,
     .word = "unlimited",
     .word_value = 99999},
    {.name = "payload",
     .type = CONF_BYTES,
     .offset = offsetof(demo,                                                     payload),
     .umin = 1200,
     .umax = 1500,
     .zero_ok = 1},
    {.name = "flag", .type = CONF_BOOL,                      .offset = offsetof(demo,                                          flag)                },
    {.name = "color",      .type = CONF_CHOICE,                          .offset = offsetof(demo,                                    color),                                                      .choices = colors                                                                                                              },
};
static const conf_table demo_table = {demo_keys, sizeof(demo_keys) / sizeof(demo_keys[0])};

static char err[1024];

static int parse(demo *d, const char *text) {
    err[0] = 0;
    return conf_parse(&demo_table, d, "t.conf", text, strlen(text), err, sizeof(err));
}

/* Parses text into a fresh demo and expects failure with want in the message. */
static void expect_error(const char *text, const char *want) {
    demo d = {0};
    int rv = parse(&d, text);
    if (rv != -1 || !strstr(err, want))
        fail_msg("parsing [%s]: rv %d, message [%s], expected [%s]", text, rv, err, want);
    conf_free(&demo_table, &d);
}

static void test_good_file(void **state) {
    (void)state;
    demo d = {0};
    const char *text = "\xef\xbb\xbf# a comment\n"
                       "\n"
                       "   # an indented comment\n"
                       "name = hello world   # trailing comment\r\n"
                       "secs=90s\n"
                       "\tratio\t=\t0.25\t\n"
                       "size = 64M\n"
                       "count = unlimited\n"
                       "payload = 0\n"
                       "flag = Yes\n"
                       "color = BLUE"; /* no newline at the end */
    assert_int_equal(parse(&d, text), 0);
    assert_string_equal(d.name, "hello world");
    assert_true(d.secs == 90);
    assert_true(d.ratio == 0.25);
    assert_int_equal(d.size, 64ull << 20);
    assert_int_equal(d.count, 99999);
    assert_int_equal(d.payload, 0);
    assert_int_equal(d.flag, 1);
    assert_int_equal(d.color, 2);
    conf_free(&demo_table, &d);
    assert_null(d.name);
}

static void test_quotes_and_hash(void **state) {
    (void)state;
    demo d = {0};
    assert_int_equal(parse(&d, "name = \"  a # b  \"  # comment\n"), 0);
    assert_string_equal(d.name, "  a # b  ");
    conf_free(&demo_table, &d);
    /* '#' inside a word is part of the value; only a blank before it starts a comment. */
    demo e = {0};
    assert_int_equal(parse(&e, "name = a#b\n"), 0);
    assert_string_equal(e.name, "a#b");
    conf_free(&demo_table, &e);
    expect_error("name = \"abc\n", "t.conf:1: name: unterminated quote");
    expect_error("name = \"abc\" d\n", "t.conf:1: name: text after the closing quote");
}

static void test_bad_lines(void **state) {
    (void)state;
    expect_error("secs 5\n", "t.conf:1: expected 'key = value', not 'secs 5'");
    expect_error("\n\n= 5\n", "t.conf:3: expected 'key = value'");
    expect_error("[section]\n", "t.conf:1: expected 'key = value', not '[section]'");
    expect_error("secs =\n", "t.conf:1: secs: no value");
    expect_error("secs =   # nothing\n", "t.conf:1: secs: no value");
    expect_error("secs = 5\nsecs = 6\n", "t.conf:2: secs: set twice (first on line 1)");
    expect_error("colour = red\n", "t.conf:1: unknown key 'colour' (did you mean 'color'?)");
    expect_error("zzzzzzzz = 1\n", "t.conf:1: unknown key 'zzzzzzzz'");
    expect_error("Secs = 1\n", "unknown key 'Secs' (did you mean 'secs'?)");
    /* A NUL byte, a line too long, a file too large. */
    demo d = {0};
    assert_int_equal(
        conf_parse(&demo_table, &d, "t.conf", "secs = 1\nna\0me = x\n", 20, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "t.conf:2: NUL byte"));
    size_t big = CONF_MAX_LINE + 10;
    char *line = malloc(big + 1);
    memset(line, 'a', big);
    memcpy(line, "name = ", 7);
    line[big] = 0;
    assert_int_equal(parse(&d, line), -1);
    assert_non_null(strstr(err, "t.conf:1: line longer than 4096 bytes"));
    free(line);
    assert_int_equal(conf_parse(&demo_table, &d, "t.conf", "", CONF_MAX_FILE + 1, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "larger than"));
    conf_free(&demo_table, &d);
}

static void test_seconds(void **state) {
    (void)state;
    struct {
        const char *text;
        double want; /* < 0: refused */
    } cases[] = {
        {"1",     1   },
        {"0.5",   0.5 },
        {".5",    0.5 },
        {"2.",    2   },
        {"1e3",   1000},
        {"500ms", 0.5 },
        {"2m",    120 },
        {"2 min", 120 },
        {"1h",    3600},
        {"2h",    7200},
        {"3h",    -1  },
        {"0.4",   -1  },
        {"499ms", -1  },
        {"-1",    -1  },
        {"+1",    -1  },
        {"inf",   -1  },
        {"nan",   -1  },
        {"0x10",  -1  },
        {"1.2.3", -1  },
        {"5 sec", -1  },
        {"5d",    -1  },
        {"",      -1  },
        {"1e999", -1  },
        {"s",     -1  },
        {"5 s",   5   },
        {"1e-1h", 360 },
    };
    const conf_key *k = conf_find(&demo_table, "secs");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        demo d = {.secs = 42};
        char why[256] = "";
        int rv = conf_set(k, &d, cases[i].text, why, sizeof(why));
        if (cases[i].want < 0) {
            if (rv != -1 || d.secs != 42 || !strstr(why, "wants seconds from 0.5 to 7200"))
                fail_msg("'%s' accepted (%g) or bad message [%s]", cases[i].text, d.secs, why);
        } else if (rv != 0 || d.secs != cases[i].want) {
            fail_msg("'%s' gave rv %d, %g [%s]", cases[i].text, rv, d.secs, why);
        }
    }
}

static void test_whole_numbers(void **state) {
    (void)state;
    const conf_key *size = conf_find(&demo_table, "size");
    const conf_key *count = conf_find(&demo_table, "count");
    const conf_key *payload = conf_find(&demo_table, "payload");
    demo d = {0};
    char why[256];
    assert_int_equal(conf_set(size, &d, "4K", why, sizeof(why)), 0);
    assert_int_equal(d.size, 4096);
    assert_int_equal(conf_set(size, &d, "4k", why, sizeof(why)), 0);
    assert_int_equal(d.size, 4096);
    assert_int_equal(conf_set(size, &d, "3 MiB", why, sizeof(why)), 0);
    assert_int_equal(d.size, 3ull << 20);
    assert_int_equal(conf_set(size, &d, "16G", why, sizeof(why)), 0);
    assert_int_equal(d.size, 16ull << 30);
    assert_int_equal(conf_set(size, &d, "18446744073709551615", why, sizeof(why)), 0);
    assert_int_equal(d.size, UINT64_MAX);
    static const char *const bad_sizes[] = {
        "0", "-1", "1.5K", "1T", "18446744073709551616", "17179869184G", "0x10", "K", " 1", "1KB",
    };
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        d.size = 7;
        if (conf_set(size, &d, bad_sizes[i], why, sizeof(why)) != -1 || d.size != 7 ||
            !strstr(why, "wants a byte count"))
            fail_msg("size '%s' accepted or bad message [%s]", bad_sizes[i], why);
    }
    /* A count has no units; its word; its bounds. */
    assert_int_equal(conf_set(count, &d, "1000", why, sizeof(why)), 0);
    assert_int_equal(d.count, 1000);
    assert_int_equal(conf_set(count, &d, "0", why, sizeof(why)), 0);
    assert_int_equal(conf_set(count, &d, "unlimited", why, sizeof(why)), 0);
    assert_int_equal(d.count, 99999);
    assert_int_equal(conf_set(count, &d, "1001", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "wants a whole number, from 0 to 1000, or 'unlimited'"));
    assert_int_equal(conf_set(count, &d, "1K", why, sizeof(why)), -1);
    assert_int_equal(conf_set(count, &d, "Unlimited", why, sizeof(why)), -1);
    /* 0, or 1200 to 1500. */
    assert_int_equal(conf_set(payload, &d, "0", why, sizeof(why)), 0);
    assert_int_equal(conf_set(payload, &d, "1200", why, sizeof(why)), 0);
    assert_int_equal(conf_set(payload, &d, "1500", why, sizeof(why)), 0);
    assert_int_equal(conf_set(payload, &d, "1199", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "0 or from 1200 to 1500"));
    assert_int_equal(conf_set(payload, &d, "1501", why, sizeof(why)), -1);
}

static void test_bool_choice_string(void **state) {
    (void)state;
    demo d = {0};
    char why[256];
    const conf_key *flag = conf_find(&demo_table, "flag");
    static const char *const yes[] = {"yes", "YES", "true", "on", "1"};
    static const char *const no[] = {"no", "False", "off", "0"};
    for (size_t i = 0; i < 5; i++) {
        d.flag = 0;
        assert_int_equal(conf_set(flag, &d, yes[i], why, sizeof(why)), 0);
        assert_int_equal(d.flag, 1);
    }
    for (size_t i = 0; i < 4; i++) {
        d.flag = 1;
        assert_int_equal(conf_set(flag, &d, no[i], why, sizeof(why)), 0);
        assert_int_equal(d.flag, 0);
    }
    assert_int_equal(conf_set(flag, &d, "maybe", why, sizeof(why)), -1);
    assert_string_equal(why, "wants yes or no, not 'maybe'");
    const conf_key *color = conf_find(&demo_table, "color");
    assert_int_equal(conf_set(color, &d, "purple", why, sizeof(why)), -1);
    assert_string_equal(why, "wants one of red, green, blue, not 'purple'");
    const conf_key *name = conf_find(&demo_table, "name");
    assert_int_equal(conf_set(name, &d, "", why, sizeof(why)), -1);
    assert_int_equal(conf_set(name, &d, "a\tb", why, sizeof(why)), -1);
    assert_string_equal(why, "contains a control character");
    assert_int_equal(conf_set(name, &d, "box", why, sizeof(why)), -1);
    assert_string_equal(why, "must not contain x");
    assert_null(d.name);
    assert_int_equal(conf_set(name, &d, "ok", why, sizeof(why)), 0);
    assert_int_equal(conf_set(name, &d, "ok2", why, sizeof(why)), 0); /* replaces, no leak */
    assert_string_equal(d.name, "ok2");
    conf_free(&demo_table, &d);
}

/* Every key of the real tables: the printed settings read back to the same print. */
static void test_print_parse_round_trip(void **state) {
    (void)state;
    cli_tunnel_settings a, b;
    assert_int_equal(cli_tunnel_settings_init(&a), 0);
    assert_int_equal(cli_tunnel_settings_init(&b), 0);
    const char *text = "cloud_url = quic://edge.example.com:4433\n"
                       "server_name = edge.example.com\n"
                       "ca = /etc/synesis/edge ca.pem\n"
                       "tls_groups = \"X25519 # odd\"\n"
                       "system_trust = yes\n"
                       "spki_pins = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, "
                       "0000000000000000000000000000000000000000000000000000000000000001\n"
                       "device_id = dev-1\n"
                       "heartbeat_interval = 250ms\n"
                       "idle_timeout = 0.1h\n"
                       "max_udp_payload = 1280\n"
                       "pmtud = no\n"
                       "congestion_control = bbr\n"
                       "reconnect_max_attempts = 12\n"
                       "reconnect_jitter = 0.33\n"
                       "log_level = debug\n";
    assert_int_equal(
        conf_parse(&cli_tunnel_table, &a, "agent.conf", text, strlen(text), err, sizeof(err)), 0);
    char *out1 = NULL, *out2 = NULL;
    size_t len1 = 0, len2 = 0;
    FILE *f = open_memstream(&out1, &len1);
    conf_print_values(f, &cli_tunnel_table, &a);
    fclose(f);
    assert_int_equal(conf_parse(&cli_tunnel_table, &b, "printed", out1, len1, err, sizeof(err)), 0);
    f = open_memstream(&out2, &len2);
    conf_print_values(f, &cli_tunnel_table, &b);
    fclose(f);
    assert_string_equal(out1, out2);
    assert_non_null(strstr(out1, "heartbeat_interval = 0.25\n"));
    assert_non_null(strstr(out1, "idle_timeout = 360\n"));
    assert_non_null(strstr(out1, "tls_groups = \"X25519 # odd\"\n"));
    assert_true(b.heartbeat_interval == 0.25);
    assert_int_equal(b.congestion_control, SYNESIS_CC_BBR);
    free(out1);
    free(out2);
    conf_free(&cli_tunnel_table, &a);
    conf_free(&cli_tunnel_table, &b);

    cli_edge_settings e, e2;
    assert_int_equal(cli_edge_settings_init(&e), 0);
    assert_int_equal(cli_edge_settings_init(&e2), 0);
    const char *etext = "listen = 0.0.0.0:443\nretry_threshold = never\nmax_conn_buffer = 1G\n"
                        "socket_buffer = 0\ndevice_pings = no\n";
    assert_int_equal(
        conf_parse(&cli_edge_table, &e, "edge.conf", etext, strlen(etext), err, sizeof(err)), 0);
    f = open_memstream(&out1, &len1);
    conf_print_values(f, &cli_edge_table, &e);
    fclose(f);
    assert_non_null(strstr(out1, "retry_threshold = never\n"));
    assert_non_null(strstr(out1, "max_conn_buffer = 1G\n"));
    assert_non_null(strstr(out1, "max_request_size = 64M\n"));
    assert_int_equal(conf_parse(&cli_edge_table, &e2, "printed", out1, len1, err, sizeof(err)), 0);
    assert_int_equal(e2.retry_threshold, UINT64_MAX);
    syn_edge_config ec;
    syn_edge_config_init(&ec);
    cli_edge_apply(&e2, &ec);
    assert_true(ec.retry_threshold == SYN_EDGE_RETRY_NEVER);
    assert_int_equal(ec.max_conn_buffer, 1u << 30);
    assert_int_equal(ec.ping_devices, 0);
    free(out1);
    conf_free(&cli_edge_table, &e);
    conf_free(&cli_edge_table, &e2);
}

/* Bounds of the real keys, as an operator meets them. */
static void test_real_keys(void **state) {
    (void)state;
    struct {
        const char *line;
        const char *want; /* NULL: accepted */
    } cases[] = {
        {"heartbeat_interval = 0",              NULL                                                 },
        {"heartbeat_interval = 366d",           "heartbeat_interval: wants seconds from 0 to"        },
        {"heartbeat_interval = 8761h",          "wants seconds from 0 to 31536000"                   },
        {"idle_timeout = 0",                    "idle_timeout: wants seconds from 0.001 to"          },
        {"max_udp_payload = 1280",              NULL                                                 },
        {"max_udp_payload = 9000",              "0 or from 1200 to 1500"                             },
        {"reconnect_multiplier = 0.5",          "wants a number from 1 to 1000"                      },
        {"reconnect_jitter = 1.5",              "wants a number from 0 to 1"                         },
        {"reconnect_max_attempts = 4294967295", "or 'unlimited'"                                     },
        {"reconnect_max_attempts = 0",          NULL                                                 },
        {"close_linger = 61",                   "wants seconds from 0 to 60"                         },
        {"log_level = verbose",                 "wants one of error, warn, info, debug, trace"       },
        {"system_trust = maybe",                "wants one of auto, yes, no"                         },
        {"device_id = bad id",                  "device_id: "                                        },
        {"spki_pins = sha256//short",           "'sha256//short' is not a pin"                       },
        {"cloud-url = quic://x",                "unknown key 'cloud-url' (did you mean 'cloud_url'?)"},
        {"heartbeat_intreval = 5",              "did you mean 'heartbeat_interval'?"                 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_tunnel_settings s;
        assert_int_equal(cli_tunnel_settings_init(&s), 0);
        int rv = conf_parse(&cli_tunnel_table, &s, "/etc/synesis/agent.conf", cases[i].line,
                            strlen(cases[i].line), err, sizeof(err));
        if (cases[i].want == NULL ? rv != 0
                                  : rv != -1 || !strstr(err, cases[i].want) ||
                                        strncmp(err, "/etc/synesis/agent.conf:1: ", 27) != 0)
            fail_msg("[%s]: rv %d [%s]", cases[i].line, rv, err);
        conf_free(&cli_tunnel_table, &s);
    }
    cli_edge_settings e;
    assert_int_equal(cli_edge_settings_init(&e), 0);
    assert_int_equal(conf_parse(&cli_edge_table, &e, "edge.conf", "max_conn_buffer = 1K\n", 21, err,
                                sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "edge.conf:1: max_conn_buffer: wants a byte count, from 65536"));
    conf_free(&cli_edge_table, &e);
}

static void test_load(void **state) {
    (void)state;
    const char *tmp = getenv("SYNESIS_TEST_TMP");
    char path[512];
    snprintf(path, sizeof(path), "%s/test_conf.%d.conf", tmp ? tmp : "/tmp", (int)getpid());
    demo d = {0};
    unlink(path);
    assert_int_equal(conf_load(&demo_table, &d, path, 1, err, sizeof(err)), 1);
    assert_int_equal(conf_load(&demo_table, &d, path, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "No such file"));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* Larger than the first read buffer, so the reader grows it. */
    for (int i = 0; i < 500; i++)
        fprintf(f, "# padding line %d of the comment block\n", i);
    fprintf(f, "secs = 3\nratio = 2\n");
    fclose(f);
    assert_int_equal(conf_load(&demo_table, &d, path, 0, err, sizeof(err)), -1);
    char want[600];
    snprintf(want, sizeof(want), "%s:502: ratio: wants a number from 0 to 1, not '2'", path);
    assert_string_equal(err, want);
    assert_true(d.secs == 3); /* keys before the error stay set */
    unlink(path);
    /* A directory. */
    assert_int_equal(conf_load(&demo_table, &d, "/", 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read /: Is a directory"));
    conf_free(&demo_table, &d);
}

static void test_apply(void **state) {
    (void)state;
    cli_tunnel_settings s;
    synesis_tunnel_config cfg;
    uint8_t(*pins)[32];
    assert_int_equal(cli_tunnel_settings_init(&s), 0);
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)), -1);
    assert_string_equal(err, "cloud_url is not set (in the file, or --cloud-url)");
    const char *text = "cloud_url = quic://e:1\nidle_timeout = 6\nsystem_trust = no\n";
    assert_int_equal(
        conf_parse(&cli_tunnel_table, &s, "a.conf", text, strlen(text), err, sizeof(err)), 0);
    assert_int_equal(cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "system_trust = no leaves nothing to trust"));
    text = "ca = /ca.pem\nreconnect_initial_delay = 90\n"
           "spki_pins = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
           "01:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:"
           "00:00:00\n";
    assert_int_equal(
        conf_parse(&cli_tunnel_table, &s, "b.conf", text, strlen(text), err, sizeof(err)), 0);
    assert_int_equal(cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)), -1);
    assert_string_equal(err, "reconnect_max_delay (60 s) is below reconnect_initial_delay (90 s)");
    assert_null(pins);
    s.reconnect_initial_delay = 1;
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)), 0);
    assert_int_equal(cfg.n_spki_pins, 2);
    assert_int_equal(pins[1][0], 1);
    assert_int_equal(cfg.use_system_trust, 0);
    assert_true(cfg.keep_alive_interval == 2); /* a third of the idle timeout */
    assert_int_equal(cfg.reconnect_max_attempts, UINT32_MAX);
    assert_int_equal(cfg.retry_initial_connect, 1);
    assert_int_equal(cfg.log_level, SYNESIS_LOG_WARN);
    assert_string_equal(cfg.cert_path, "/var/lib/synesis/device.pem");
    free(pins);
    conf_free(&cli_tunnel_table, &s);
}

/* profile = low-bandwidth: the profile's values where the file keeps the defaults, the file's
 * where it sets its own. */
static void test_apply_profile(void **state) {
    (void)state;
    cli_tunnel_settings s;
    synesis_tunnel_config cfg;
    uint8_t(*pins)[32];
    assert_int_equal(cli_tunnel_settings_init(&s), 0);
    const char *text = "cloud_url = quic://e:1\nprofile = low-bandwidth\n";
    assert_int_equal(
        conf_parse(&cli_tunnel_table, &s, "a.conf", text, strlen(text), err, sizeof(err)), 0);
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)), 0);
    assert_true(cfg.heartbeat_interval == 600);
    assert_int_equal(cfg.heartbeat_changed_vitals, 1);
    assert_true(cfg.keep_alive_interval == SYNESIS_LOW_BANDWIDTH_KEEP_ALIVE);
    assert_true(cfg.idle_timeout == SYNESIS_LOW_BANDWIDTH_IDLE_TIMEOUT);
    free(pins);
    text = "heartbeat_interval = 20m\nkeep_alive_interval = 25s\n";
    assert_int_equal(
        conf_parse(&cli_tunnel_table, &s, "b.conf", text, strlen(text), err, sizeof(err)), 0);
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)), 0);
    assert_true(cfg.heartbeat_interval == 1200);
    assert_true(cfg.keep_alive_interval == 25);
    assert_true(cfg.idle_timeout == SYNESIS_LOW_BANDWIDTH_IDLE_TIMEOUT);
    assert_int_equal(cfg.heartbeat_changed_vitals, 1);
    free(pins);
    /* the default profile changes nothing */
    text = "profile = default\n";
    assert_int_equal(
        conf_parse(&cli_tunnel_table, &s, "c.conf", text, strlen(text), err, sizeof(err)), 0);
    synesis_tunnel_config_init(&cfg);
    assert_int_equal(cli_tunnel_apply(&s, &cfg, &pins, err, sizeof(err)), 0);
    assert_int_equal(cfg.heartbeat_changed_vitals, 0);
    assert_true(cfg.idle_timeout == 60);
    free(pins);
    conf_free(&cli_tunnel_table, &s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_quotes_and_hash),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_whole_numbers),
        cmocka_unit_test(test_bool_choice_string),
        cmocka_unit_test(test_print_parse_round_trip),
        cmocka_unit_test(test_real_keys),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_apply_profile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
