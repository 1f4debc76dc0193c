/* Device identity: writing files atomically, with their modes, never over an existing file
 * unasked. */
#include "identity/identity_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- atomic file writing ------------------------------------------------------------------- */

/* dir of path into out ("." when none). */
static void dir_of(const char *path, char *out, size_t len) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, len, ".");
    else if (slash == path)
        snprintf(out, len, "/");
    else
        snprintf(out, len, "%.*s", (int)(slash - path), path);
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_temp(struct syn_id_out_file *f, char *detail) {
    char dir[PATH_MAX];
    dir_of(f->path, dir, sizeof(dir));
    const char *slash = strrchr(f->path, '/');
    const char *base = slash ? slash + 1 : f->path;
    if (asprintf(&f->tmp, "%s/.%s.tmp-XXXXXX", dir, base) < 0) {
        f->tmp = NULL;
        return syn_fail(detail, SYNESIS_ERR_NOMEM, "out of memory");
    }
    /* mkostemp: O_CREAT|O_EXCL, mode 0600, so a key is never readable by others, not even briefly.
     */
    int fd = mkostemp(f->tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(f->tmp);
        f->tmp = NULL;
        if (e == ENOENT || e == ENOTDIR)
            return syn_fail(detail, SYNESIS_ERR_FILE_NOT_FOUND,
                            "directory %s (for the %s) does not exist", dir, f->what);
        return syn_fail(detail, SYNESIS_ERR_SYSTEM, "cannot create a file in %s (for the %s): %s",
                        dir, f->what, strerror(e));
    }
    char *data;
    long n = BIO_get_mem_data(f->pem, &data);
    int rc = 0;
    if ((f->mode != 0600 && fchmod(fd, f->mode) != 0) || n < 0 ||
        write_all(fd, data, (size_t)n) != 0 || fsync(fd) != 0)
        rc = syn_fail(detail, SYNESIS_ERR_SYSTEM, "writing %s: %s", f->tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = syn_fail(detail, SYNESIS_ERR_SYSTEM, "writing %s: %s", f->tmp, strerror(errno));
    return rc;
}

static int exists_error(const struct syn_id_out_file *f, char *detail) {
    return syn_fail(detail, SYNESIS_ERR_FILE_EXISTS,
                    "%s file %s already exists (refusing to overwrite it)", f->what, f->path);
}

/* Moves the temporary file into place; without overwrite, never replaces a file that appeared
 * since the check (RENAME_NOREPLACE, or link() on file systems without it). */
static int commit_file(struct syn_id_out_file *f, int overwrite, char *detail) {
    if (overwrite) {
        if (rename(f->tmp, f->path) != 0)
            return syn_fail(detail, SYNESIS_ERR_SYSTEM, "renaming %s to %s: %s", f->tmp, f->path,
                            strerror(errno));
    } else if (renameat2(AT_FDCWD, f->tmp, AT_FDCWD, f->path, RENAME_NOREPLACE) != 0) {
        int e = errno;
        if (e == EEXIST)
            return exists_error(f, detail);
        if (e != EINVAL && e != ENOSYS && e != ENOTSUP)
            return syn_fail(detail, SYNESIS_ERR_SYSTEM, "renaming %s to %s: %s", f->tmp, f->path,
                            strerror(e));
        if (link(f->tmp, f->path) == 0) {
            unlink(f->tmp);
        } else if (errno == EEXIST) {
            return exists_error(f, detail);
        } else {
            struct stat st; /* neither is supported (e.g. FAT): check, then rename */
            if (lstat(f->path, &st) == 0)
                return exists_error(f, detail);
            if (rename(f->tmp, f->path) != 0)
                return syn_fail(detail, SYNESIS_ERR_SYSTEM, "renaming %s to %s: %s", f->tmp,
                                f->path, strerror(errno));
        }
    }
    free(f->tmp);
    f->tmp = NULL;
    f->committed = 1;
    return 0;
}

static void sync_dir(const char *path) {
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof(dir));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int syn_id_check_absent(const char *path, const char *what, char *detail) {
    struct stat st;
    if (lstat(path, &st) == 0)
        return syn_fail(detail, SYNESIS_ERR_FILE_EXISTS,
                        "%s file %s already exists (refusing to overwrite it)", what, path);
    return 0;
}

int syn_id_write_files(struct syn_id_out_file *f, size_t n, int overwrite, char *detail) {
    int rc = 0;
    for (size_t i = 0; !overwrite && i < n && rc == 0; i++)
        rc = syn_id_check_absent(f[i].path, f[i].what, detail);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = write_temp(&f[i], detail);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = commit_file(&f[i], overwrite, detail);
    for (size_t i = 0; i < n; i++) {
        if (f[i].tmp) {
            unlink(f[i].tmp);
            free(f[i].tmp);
            f[i].tmp = NULL;
        }
        /* Roll back the new files of a failed set; replaced files cannot be restored. */
        if (rc && !overwrite && f[i].committed)
            unlink(f[i].path);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        sync_dir(f[i].path);
    return rc;
}

/* mkdir -p with mode 0700 for the directories it creates. */
int syn_id_make_dirs(const char *dir, char *detail) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return syn_fail(detail, SYNESIS_ERR_INVALID_ARGUMENT, "directory name too long");
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                int e = errno;
                return syn_fail(detail,
                                e == ENOENT || e == ENOTDIR ? SYNESIS_ERR_FILE_NOT_FOUND
                                                            : SYNESIS_ERR_SYSTEM,
                                "cannot create directory %s: %s", path, strerror(e));
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return syn_fail(detail, SYNESIS_ERR_SYSTEM, "%s is not a directory", dir);
    return 0;
}
