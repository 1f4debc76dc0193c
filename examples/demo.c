/* synesis-demo: the README's main job. Grows with each step of the plan. */
#include <stdio.h>
#include <string.h>

#include "synesis/synesis.h"

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: %s\nRuns the synesis-tunnel demo on loopback.\n", argv[0]);
        return 0;
    }
    char deps[128];
    synesis_dependency_versions(deps, sizeof(deps));
    printf("synesis-tunnel %s (%s)\n", synesis_version(), deps);
    return 0;
}
