/* Unix sockets bound in the data directory (DIR, argument 1) leave a file there: one found by
 * stat and removed by unlink (as MariaDB removes its socket at shutdown), one left in place.
 * Replay binds nothing; the files must be there all the same, with the same mode. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int bound(const char *path) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 4) != 0) {
        perror(path);
        return -1;
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1]) != 0)
        return 2;
    umask(027);
    if (bound("srv.sock") < 0)
        return 1;
    char abs[512];
    snprintf(abs, sizeof(abs), "%s/kept.sock", argv[1]);
    if (bound(abs) < 0)
        return 1;
    struct stat st;
    int r = stat("srv.sock", &st);
    printf("stat srv.sock: %d socket %d mode %o\n", r, r == 0 && S_ISSOCK(st.st_mode), st.st_mode & 07777);
    printf("unlink srv.sock: %d\n", unlink("srv.sock"));
    printf("unlink srv.sock again: %d\n", unlink("srv.sock"));
    return 0;
}
