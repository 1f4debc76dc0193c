/* Version and error-string API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "synesis/common.h"

#include <stdlib.h>

static void test_version(void **state) {
    (void)state;
    assert_string_equal(synesis_version(), SYNESIS_VERSION_STRING);
    assert_int_equal(synesis_version_number(), SYNESIS_VERSION_NUMBER);
    char expect[32];
    snprintf(expect, sizeof(expect), "%d.%d.%d", SYNESIS_VERSION_MAJOR, SYNESIS_VERSION_MINOR,
             SYNESIS_VERSION_PATCH);
    assert_string_equal(synesis_version(), expect);
}

static void test_dependency_versions(void **state) {
    (void)state;
    char buf[128];
    int n = synesis_dependency_versions(buf, sizeof(buf));
    assert_true(n > 0 && (size_t)n == strlen(buf));
    assert_non_null(strstr(buf, "OpenSSL 3."));
    assert_non_null(strstr(buf, "ngtcp2 1."));
    /* A short buffer is truncated but terminated, and the full length is still reported. */
    char small[8];
    assert_int_equal(synesis_dependency_versions(small, sizeof(small)), n);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static const int all_codes[] = {
    SYNESIS_OK,
    SYNESIS_ERR_INVALID_ARGUMENT,
    SYNESIS_ERR_NOMEM,
    SYNESIS_ERR_INVALID_STATE,
    SYNESIS_ERR_INTERNAL,
    SYNESIS_ERR_SYSTEM,
    SYNESIS_ERR_FILE_NOT_FOUND,
    SYNESIS_ERR_FILE_UNREADABLE,
    SYNESIS_ERR_FILE_EXISTS,
    SYNESIS_ERR_NOT_PEM,
    SYNESIS_ERR_NO_CERTIFICATE,
    SYNESIS_ERR_NO_PRIVATE_KEY,
    SYNESIS_ERR_KEY_ENCRYPTED,
    SYNESIS_ERR_KEY_MISMATCH,
    SYNESIS_ERR_KEY_PERMISSIONS,
    SYNESIS_ERR_CERT_EXPIRED,
    SYNESIS_ERR_CERT_NOT_YET_VALID,
    SYNESIS_ERR_UNSUPPORTED_KEY,
    SYNESIS_ERR_CA_UNREADABLE,
    SYNESIS_ERR_CRYPTO,
    SYNESIS_ERR_KEY_STORE,
    SYNESIS_ERR_BAD_CERTIFICATE,
    SYNESIS_ERR_KEY_PASSPHRASE,
    SYNESIS_ERR_INVALID_URL,
    SYNESIS_ERR_DNS,
    SYNESIS_ERR_SOCKET,
    SYNESIS_ERR_HANDSHAKE_TIMEOUT,
    SYNESIS_ERR_TLS_HANDSHAKE,
    SYNESIS_ERR_PEER_UNTRUSTED,
    SYNESIS_ERR_PEER_NAME_MISMATCH,
    SYNESIS_ERR_PEER_PIN_MISMATCH,
    SYNESIS_ERR_CLIENT_CERT_REJECTED,
    SYNESIS_ERR_ALPN,
    SYNESIS_ERR_QUIC,
    SYNESIS_ERR_IDLE_TIMEOUT,
    SYNESIS_ERR_CLOSED_BY_PEER,
    SYNESIS_ERR_CONNECTION_LOST,
    SYNESIS_ERR_NOT_CONNECTED,
    SYNESIS_ERR_MAX_RECONNECTS,
    SYNESIS_ERR_PEER_CERT_EXPIRED,
    SYNESIS_ERR_TIMEOUT,
    SYNESIS_ERR_RESPONSE_TOO_LARGE,
    SYNESIS_ERR_CANCELLED,
    SYNESIS_ERR_STREAM_RESET,
    SYNESIS_ERR_QUEUE_FULL,
    SYNESIS_ERR_WOULD_BLOCK,
    SYNESIS_ERR_HEARTBEAT_REFUSED,
};

static void test_every_code_has_distinct_text_and_name(void **state) {
    (void)state;
    size_t n = sizeof(all_codes) / sizeof(all_codes[0]);
    for (size_t i = 0; i < n; i++) {
        const char *t = synesis_strerror(all_codes[i]);
        const char *name = synesis_error_name(all_codes[i]);
        assert_string_not_equal(t, "unknown error");
        assert_true(strncmp(name, "SYNESIS_", 8) == 0);
        assert_string_not_equal(name, "SYNESIS_ERR_UNKNOWN");
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(all_codes[i], all_codes[j]);
            assert_string_not_equal(t, synesis_strerror(all_codes[j]));
            assert_string_not_equal(name, synesis_error_name(all_codes[j]));
        }
    }
    assert_string_equal(synesis_error_name(SYNESIS_ERR_KEY_MISMATCH), "SYNESIS_ERR_KEY_MISMATCH");
    assert_string_equal(synesis_error_name(SYNESIS_ERR_MAX_RECONNECTS),
                        "SYNESIS_ERR_MAX_RECONNECTS");
    assert_string_equal(synesis_strerror(SYNESIS_ERR_MAX_RECONNECTS),
                        "max reconnection attempts exceeded");
}

static void test_unknown_code(void **state) {
    (void)state;
    assert_string_equal(synesis_strerror(-9999), "unknown error");
    assert_string_equal(synesis_strerror(1), "unknown error");
    assert_string_equal(synesis_error_name(-9999), "SYNESIS_ERR_UNKNOWN");
}

static void test_grow(void **state) {
    (void)state;
    size_t cap = 0;
    int *a = syn_grow(NULL, &cap, 3, sizeof(int), 4, 0);
    assert_non_null(a);
    assert_int_equal(cap, 4);
    assert_ptr_equal(syn_grow(a, &cap, 4, sizeof(int), 4, 0), a); /* room already */
    a = syn_grow(a, &cap, 5, sizeof(int), 4, 0);
    assert_int_equal(cap, 8); /* doubles */
    a = syn_grow(a, &cap, 9, sizeof(int), 4, 10);
    assert_int_equal(cap, 10); /* capped at the limit */
    size_t before = cap;
    assert_null(syn_grow(a, &cap, 11, sizeof(int), 4, 10)); /* over the limit */
    assert_int_equal(cap, before);
    assert_null(syn_grow(a, &cap, SIZE_MAX / 2, 16, 4, 0)); /* overflow */
    assert_int_equal(cap, before);
    free(a);
}

static void test_copy_str(void **state) {
    (void)state;
    char b[4];
    syn_copy_str(b, sizeof(b), "abcdef");
    assert_string_equal(b, "abc");
    syn_copy_str(b, sizeof(b), NULL);
    assert_string_equal(b, "");
    syn_copy_str(b, sizeof(b), "ab");
    assert_string_equal(b, "ab");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_dependency_versions),
        cmocka_unit_test(test_every_code_has_distinct_text_and_name),
        cmocka_unit_test(test_unknown_code),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_copy_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
