/* Cloud URL parsing: table-driven accepted and refused URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "url.h"

struct good_case {
    const char *url;
    const char *host;
    unsigned port;
    int is_ip;
};

static const struct good_case good[] = {
    {"quic://edge.example.com",             "edge.example.com",     443,   0},
    {"quic://edge.example.com:4433",        "edge.example.com",     4433,  0},
    {"quic://edge.example.com/",            "edge.example.com",     443,   0},
    {"quic://edge.example.com:4433/",       "edge.example.com",     4433,  0},
    {"https://edge.example.com",            "edge.example.com",     443,   0},
    {"https://edge.example.com:8443/",      "edge.example.com",     8443,  0},
    {"QUIC://Edge.Example.COM",             "Edge.Example.COM",     443,   0},
    {"HtTpS://edge",                        "edge",                 443,   0},
    {"quic://localhost:1",                  "localhost",            1,     0},
    {"quic://localhost:65535",              "localhost",            65535, 0},
    {"quic://localhost:00443",              "localhost",            443,   0},
    {"quic://a",                            "a",                    443,   0},
    {"quic://a-b.c-d.e",                    "a-b.c-d.e",            443,   0},
    {"quic://123.example",                  "123.example",          443,   0},
    {"quic://0x.example.com",               "0x.example.com",       443,   0},
    {"quic://x1",                           "x1",                   443,   0},
    {"quic://edge.0xg",                     "edge.0xg",             443,   0},
    {"quic://1.2.3.4a",                     "1.2.3.4a",             443,   0},
    {"quic://127.0.0.1",                    "127.0.0.1",            443,   4},
    {"quic://127.0.0.1:4433",               "127.0.0.1",            4433,  4},
    {"https://192.0.2.10:443/",             "192.0.2.10",           443,   4},
    {"quic://0.0.0.0",                      "0.0.0.0",              443,   4},
    {"quic://255.255.255.255:9",            "255.255.255.255",      9,     4},
    {"quic://[::1]",                        "::1",                  443,   6},
    {"quic://[::1]:4433",                   "::1",                  4433,  6},
    {"quic://[::1]:4433/",                  "::1",                  4433,  6},
    {"quic://[2001:db8::42]/",              "2001:db8::42",         443,   6},
    {"https://[2001:DB8:0:0:0:0:0:1]:8443", "2001:DB8:0:0:0:0:0:1", 8443,  6},
    {"quic://[::ffff:192.0.2.1]",           "::ffff:192.0.2.1",     443,   6},
};

struct bad_case {
    const char *url;
    const char *why; /* expected substring of the detail */
};

static const struct bad_case bad[] = {
    {"",                                                           "no scheme"                                },
    {"edge.example.com",                                           "no scheme"                                },
    {"edge.example.com:4433",                                      "no scheme"                                },
    {"quic:/edge",                                                 "no scheme"                                },
    {"quic:edge",                                                  "no scheme"                                },
    {"://edge",                                                    "unknown scheme ''"                        },
    {"http://edge",                                                "unknown scheme 'http'"                    },
    {"ftp://edge",                                                 "unknown scheme 'ftp'"                     },
    {"quics://edge",                                               "unknown scheme 'quics'"                   },
    {" quic://edge",                                               "unknown scheme ' quic'"                   },
    {"qu\x01ic://edge",                                            "unknown scheme 'qu?ic'"                   },
    {"averyveryveryveryveryverylongscheme://edge",
     "unknown scheme 'averyveryveryveryveryverylongsch...'"                                                   },
    {"quic://",                                                    "the host is empty"                        },
    {"quic:///",                                                   "the host is empty"                        },
    {"quic://:443",                                                "the host is empty"                        },
    {"quic://[]",                                                  "the host is empty"                        },
    {"quic://[]:443",                                              "the host is empty"                        },
    {"quic://?x",                                                  "the host is empty"                        },
    {"quic://user@edge",                                           "user information"                         },
    {"quic://user:pw@edge:443",                                    "user information"                         },
    {"quic://@edge",                                               "user information"                         },
    {"quic://edge:",                                               "the port is empty"                        },
    {"quic://edge:/",                                              "the port is empty"                        },
    {"quic://[::1]:",                                              "the port is empty"                        },
    {"quic://edge:0",                                              "port 0 is out of range"                   },
    {"quic://edge:00",                                             "port 00 is out of range"                  },
    {"quic://edge:65536",                                          "port 65536 is out of range"               },
    {"quic://edge:99999999999999999999",                           "port 99999999999999999999 is out of range"},
    {"quic://edge:443x",                                           "the port '443x' is not a decimal number"  },
    {"quic://edge:http",                                           "the port 'http' is not a decimal number"  },
    {"quic://edge:-1",                                             "the port '-1' is not a decimal number"    },
    {"quic://edge:+443",                                           "not a decimal number"                     },
    {"quic://edge: 443",                                           "not a decimal number"                     },
    {"quic://edge/path",                                           "a path ('/path') is not allowed"          },
    {"quic://edge//",                                              "a path ('//') is not allowed"             },
    {"quic://edge:443/x/",                                         "a path ('/x/') is not allowed"            },
    {"quic://[::1]/x",                                             "a path"                                   },
    {"quic://edge?x=1",                                            "a query"                                  },
    {"quic://edge/?x=1",                                           "a query"                                  },
    {"quic://edge?",                                               "a query"                                  },
    {"quic://edge#frag",                                           "a fragment"                               },
    {"quic://edge/#",                                              "a fragment"                               },
    {"quic://::1",                                                 "must be enclosed in brackets"             },
    {"quic://::1:4433",                                            "must be enclosed in brackets"             },
    {"quic://2001:db8::1",                                         "must be enclosed in brackets"             },
    {"quic://[::1",                                                "without a matching ']'"                   },
    {"quic://::1]",                                                "must be enclosed in brackets"             },
    {"quic://edge]",                                               "without a matching '['"                   },
    {"quic://[::1]x",                                              "unexpected characters after ']'"          },
    {"quic://[::1]]",                                              "unexpected characters after ']'"          },
    {"quic://[::1]:44:33",                                         "not a decimal number"                     },
    {"quic://[fe80::1%25eth0]",                                    "zone indexes"                             },
    {"quic://[fe80::1%eth0]:443",                                  "zone indexes"                             },
    {"quic://[127.0.0.1]",                                         "'127.0.0.1' is not a valid IPv6 address"  },
    {"quic://[edge]",                                              "'edge' is not a valid IPv6 address"       },
    {"quic://[1:2:3:4:5:6:7:8:9]",                                 "is not a valid IPv6 address"              },
    {"quic://[0000:0000:0000:0000:0000:0000:0000:0000:1]",         "not a valid IPv6 address"                 },
    {"quic://[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]",
     "the bracketed host is not a valid IPv6"                                                                 },
    {"quic://edge_1.example.com",                                  "invalid character '_'"                    },
    {"quic://edge example",                                        "invalid character '\\x20'"                },
    {"quic://edge\texample",                                       "invalid character '\\x09'"                },
    {"quic://ed%41ge",                                             "invalid character '%'"                    },
    {"quic://\xc3\xa9"
     "dge",                                                   "invalid character '\\xc3'"                },
    {"quic://edge*",                                               "invalid character '*'"                    },
    {"quic://.edge",                                               "empty label"                              },
    {"quic://edge.",                                               "empty label"                              },
    {"quic://edge..example",                                       "empty label"                              },
    {"quic://.",                                                   "empty label"                              },
    {"quic://-edge",                                               "starts or ends with '-'"                  },
    {"quic://edge-.example",                                       "starts or ends with '-'"                  },
    {"quic://1.2.3",                                               "looks like an IPv4 address"               },
    {"quic://1.2.3.256",                                           "looks like an IPv4 address"               },
    {"quic://1.2.3.4.5",                                           "looks like an IPv4 address"               },
    {"quic://01.2.3.4",                                            "looks like an IPv4 address"               },
    {"quic://4294967295",                                          "looks like an IPv4 address"               },
    {"quic://0x7f.1",                                              "looks like an IPv4 address"               },
    {"quic://edge.0x1F",                                           "looks like an IPv4 address"               },
    {"quic://example.123",                                         "looks like an IPv4 address"               },
};

static void test_good_urls(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        syn_url u;
        char detail[SYNESIS_DETAIL_MAX] = "";
        memset(&u, 0xAA, sizeof(u));
        int rv = syn_url_parse(good[i].url, &u, detail);
        if (rv != 0)
            print_error("unexpectedly refused: %s -> %s\n", good[i].url, detail);
        assert_int_equal(rv, 0);
        assert_string_equal(u.host, good[i].host);
        assert_int_equal(u.port, good[i].port);
        assert_int_equal(u.is_ip, good[i].is_ip);
    }
}

static void test_bad_urls(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        syn_url u, before;
        memset(&u, 0x5A, sizeof(u));
        before = u;
        char detail[SYNESIS_DETAIL_MAX] = "";
        int rv = syn_url_parse(bad[i].url, &u, detail);
        if (rv != SYNESIS_ERR_INVALID_URL || !strstr(detail, bad[i].why))
            print_error("case %zu: '%s' -> rv %d detail \"%s\" (expected \"%s\")\n", i, bad[i].url,
                        rv, detail, bad[i].why);
        assert_int_equal(rv, SYNESIS_ERR_INVALID_URL);
        assert_non_null(strstr(detail, bad[i].why));
        assert_true(strncmp(detail, "invalid cloud URL '", 19) == 0);
        /* The output is untouched on failure. */
        assert_memory_equal(&u, &before, sizeof(u));
        /* No detail buffer is fine too. */
        assert_int_equal(syn_url_parse(bad[i].url, &u, NULL), SYNESIS_ERR_INVALID_URL);
    }
}

static void test_detail_quotes_url(void **state) {
    (void)state;
    syn_url u;
    char detail[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_url_parse("quic://edge:0", &u, detail), SYNESIS_ERR_INVALID_URL);
    assert_string_equal(detail,
                        "invalid cloud URL 'quic://edge:0': port 0 is out of range (1-65535)");
    /* Control characters are not copied into the message. */
    assert_int_equal(syn_url_parse("quic://ed\nge", &u, detail), SYNESIS_ERR_INVALID_URL);
    assert_string_equal(
        detail,
        "invalid cloud URL 'quic://ed?ge': the host contains the invalid character '\\x0a'");
}

static void test_host_length(void **state) {
    (void)state;
    /* 253 characters: labels of 63 separated by dots (63*4+3 = 255, so trim). */
    char host[300], url[400], detail[SYNESIS_DETAIL_MAX];
    memset(host, 'a', sizeof(host));
    host[63] = host[127] = host[191] = '.';
    host[253] = '\0';
    assert_int_equal((int)strlen(host), 253);
    snprintf(url, sizeof(url), "quic://%s:7", host);
    syn_url u;
    assert_int_equal(syn_url_parse(url, &u, detail), 0);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, 7);

    host[253] = 'a';
    host[254] = '\0';
    snprintf(url, sizeof(url), "quic://%s", host);
    assert_int_equal(syn_url_parse(url, &u, detail), SYNESIS_ERR_INVALID_URL);
    assert_non_null(strstr(detail, "longer than 253 characters"));
    /* The quote of a long URL is shortened, and the message still says what is wrong. */
    assert_non_null(strstr(detail, "...'"));
    assert_true(strlen(detail) < SYNESIS_DETAIL_MAX - 1);

    /* A label of 64 characters. */
    memset(host, 'b', 64);
    snprintf(host + 64, sizeof(host) - 64, ".example");
    snprintf(url, sizeof(url), "quic://%s", host);
    assert_int_equal(syn_url_parse(url, &u, detail), SYNESIS_ERR_INVALID_URL);
    assert_non_null(strstr(detail, "longer than 63 characters"));
    /* 63 is fine. */
    snprintf(url, sizeof(url), "quic://%s", host + 1);
    assert_int_equal(syn_url_parse(url, &u, detail), 0);
    assert_string_equal(u.host, host + 1);
}

static void test_very_long_url(void **state) {
    (void)state;
    char url[4096], detail[SYNESIS_DETAIL_MAX];
    snprintf(url, sizeof(url), "quic://edge/");
    memset(url + 12, 'p', sizeof(url) - 13);
    url[sizeof(url) - 1] = '\0';
    syn_url u;
    assert_int_equal(syn_url_parse(url, &u, detail), SYNESIS_ERR_INVALID_URL);
    assert_non_null(strstr(detail, "a path ('/ppp"));
    assert_true(strlen(detail) < 400);
}

static void test_null_arguments(void **state) {
    (void)state;
    syn_url u;
    char detail[SYNESIS_DETAIL_MAX];
    assert_int_equal(syn_url_parse(NULL, &u, detail), SYNESIS_ERR_INVALID_URL);
    assert_string_equal(detail, "no cloud URL given");
    assert_int_equal(syn_url_parse("quic://edge", NULL, detail), SYNESIS_ERR_INVALID_ARGUMENT);
    assert_int_equal(syn_url_parse(NULL, &u, NULL), SYNESIS_ERR_INVALID_URL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_urls),         cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_detail_quotes_url), cmocka_unit_test(test_host_length),
        cmocka_unit_test(test_very_long_url),     cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
