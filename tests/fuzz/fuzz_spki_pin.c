/* SPKI pin parsing (synesis_spki_pin_parse, src/identity/inspect.c): any bytes as a pin. Checked:
 * the output is written only on success; an accepted pin written back in each of the three accepted
 * forms (sha256//base64, 64 hex digits, colon-separated hex) parses to the same 32 bytes. */
#include "fuzz.h"

#include "synesis/identity.h"

#include <openssl/evp.h>

static void check_roundtrip(const uint8_t pin[32]) {
    char text[128];
    uint8_t back[32];

    memcpy(text, "sha256//", 8);
    FUZZ_CHECK(EVP_EncodeBlock((unsigned char *)text + 8, pin, 32) == 44);
    FUZZ_CHECK(synesis_spki_pin_parse(text, back) == 0 && memcmp(pin, back, 32) == 0);

    for (int i = 0; i < 32; i++)
        snprintf(text + 2 * i, 3, "%02x", pin[i]);
    FUZZ_CHECK(synesis_spki_pin_parse(text, back) == 0 && memcmp(pin, back, 32) == 0);

    for (int i = 0; i < 32; i++)
        snprintf(text + 3 * i, 4, "%02X%s", pin[i], i < 31 ? ":" : "");
    FUZZ_CHECK(synesis_spki_pin_parse(text, back) == 0 && memcmp(pin, back, 32) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    uint8_t pin[32], untouched[32];
    memset(pin, 0xa5, sizeof(pin));
    memset(untouched, 0xa5, sizeof(untouched));
    int rv = synesis_spki_pin_parse(text, pin);
    FUZZ_CHECK(rv == 0 || rv == SYNESIS_ERR_INVALID_ARGUMENT);
    if (rv == 0)
        check_roundtrip(pin);
    else
        FUZZ_CHECK(memcmp(pin, untouched, 32) == 0);
    free(text);
    return 0;
}
