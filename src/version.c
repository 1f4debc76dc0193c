/* Version queries. */
#include "internal.h"

#include <ngtcp2/ngtcp2.h>
#include <openssl/crypto.h>
#include <stdio.h>

SYNESIS_API const char *synesis_version(void) { return SYNESIS_VERSION_STRING; }

SYNESIS_API unsigned int synesis_version_number(void) { return SYNESIS_VERSION_NUMBER; }

SYNESIS_API int synesis_dependency_versions(char *buf, size_t len) {
    if (!buf && len)
        return SYNESIS_ERR_INVALID_ARGUMENT;
    const ngtcp2_info *ng = ngtcp2_version(0);
    return snprintf(buf, len, "OpenSSL %s, ngtcp2 %s", OpenSSL_version(OPENSSL_VERSION_STRING),
                    ng->version_str);
}
