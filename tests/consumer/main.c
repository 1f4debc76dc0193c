/* Consumer test: uses the installed public headers and library. */
#include <stdio.h>
#include <string.h>

#include <synesis/synesis.h>

int main(void) {
    char deps[128];
    synesis_dependency_versions(deps, sizeof(deps));
    printf("synesis_tunnel %s (%s)\n", synesis_version(), deps);
    if (strcmp(synesis_version(), SYNESIS_VERSION_STRING) != 0)
        return 1;
    if (strcmp(synesis_error_name(SYNESIS_ERR_KEY_MISMATCH), "SYNESIS_ERR_KEY_MISMATCH") != 0)
        return 1;
    /* The sized initialiser of the installed header and library. */
    synesis_tunnel_config cfg;
    synesis_tunnel_config_init(&cfg);
    if (cfg.struct_size != sizeof(cfg) || cfg.idle_timeout != 60.0)
        return 1;
    return 0;
}
