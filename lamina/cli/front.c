/* The compiled front of the ``lamina`` program: a command for the engine cache's fork server,
 * sent without starting an interpreter.
 *
 * The Python front (lamina/cli/front.py) hands a command to a worker of the engine cache's
 * fork server (lamina/cli/forkserver.py) and waits for its exit status; on this machine its
 * interpreter takes 12-16 ms to start before it sends a byte, more than the fork server and
 * its worker spend before the command's own work begins.  This program is the same client for
 * the same exchange: it chooses the fork server by the same identity (the cache key of
 * lamina.cli.front.cache_socket), sends the request of lamina.cli.forkserver.encode_request with
 * descriptors 0-2 and the working directory, relays signals as run_forked does, and exits with
 * the worker's status.  Whatever it does not handle it leaves to the Python front, by
 * executing it with the same command line and environment (nothing is sent or run first):
 *
 *   - a global option (``-H``, ``--log-level``, ...), no command, ``serve`` or ``login``;
 *   - ``LAMINA_FORWARD=0``, ``LAMINA_HOST`` / ``DOCKER_HOST``, a variable that changes the
 *     engine (front.py's _ENGINE_ENVIRONMENT); for an unprivileged user, ``HOME`` unset (with
 *     ``XDG_DATA_HOME`` unset too) or ``XDG_RUNTIME_DIR`` unset or relative;
 *   - a descriptor 0-2 closed, a working directory that cannot be opened;
 *   - no fork server at the identity's socket, or one that did not take the request (no
 *     ``P`` line: nothing ran).  The Python front then tries again, runs the command
 *     in-process and starts the engine cache for the next commands.
 *
 * So the Python front stays the one definition of what a command does; this program only
 * makes the commonest path shorter.  Reads (``ps``, ``images``, ...) also go to the fork
 * server: a worker runs them in-process, with the same output as the Python front's path to
 * the cache (both run lamina.cli.main).
 *
 * What differs from Python's own view must be rebuilt here, and is:
 *   - the identity's interpreter, prefix and code tree are the build's (lamina/cli/frontbuild.py
 *     writes them, with every constant shared with the Python side, into front_config.h);
 *   - Python's locale coercion (PEP 538): an interpreter whose LC_CTYPE locale is "C" sets
 *     LC_CTYPE=C.UTF-8 in its environment before any code runs; that variable is part of the
 *     identity and of the environment a worker gets, so this program sets it the same way;
 *   - the rootless roots of lamina/config.py for an unprivileged user, and os.path.abspath of
 *     the data and exec roots (normalisation without the file system);
 *   - SHA-256 (FIPS 180-4), for the key, written below (no library call: libcrypto alone
 *     would cost more to load than this whole program).
 *
 * Built by ``make`` into the virtual environment as ``lamina`` (the Python entry script is
 * what pip installs there; the Python front runs from its module).  Tests:
 * tests/cli/test_compiled_front.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <langinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "front_config.h"

extern char **environ;

#define IDENTITY_LIMIT 65536

/* -- the Python front ------------------------------------------------------------------- */

static char **arguments;  /* this program's argv */
static int argument_count;

/* Run the Python front with this command line; never returns. */
static void python_front(void) {
    char **argv = calloc((size_t)argument_count + 4, sizeof *argv);
    if (argv != NULL) {
        argv[0] = (char *)PYTHON;
        argv[1] = "-P";  /* no working directory (or script directory) on the import path */
        argv[2] = "-c";
        argv[3] = (char *)PYTHON_FRONT;
        for (int index = 1; index < argument_count; index++)
            argv[index + 3] = arguments[index];
        execv(PYTHON, argv);
    }
    dprintf(2, "Error: cannot run lamina's Python front %s: %s\n", PYTHON, strerror(errno));
    exit(125);
}

/* -- SHA-256 (FIPS 180-4) ----------------------------------------------------------------- */

static const uint32_t ROUND_CONSTANTS[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotate(uint32_t value, int bits) { return (value >> bits) | (value << (32 - bits)); }

static void compress(uint32_t state[8], const unsigned char block[64]) {
    uint32_t schedule[64];
    for (int index = 0; index < 16; index++)
        schedule[index] = (uint32_t)block[4 * index] << 24 | (uint32_t)block[4 * index + 1] << 16 |
                          (uint32_t)block[4 * index + 2] << 8 | (uint32_t)block[4 * index + 3];
    for (int index = 16; index < 64; index++) {
        uint32_t w15 = schedule[index - 15], w2 = schedule[index - 2];
        schedule[index] = schedule[index - 16] + (rotate(w15, 7) ^ rotate(w15, 18) ^ (w15 >> 3)) +
                          schedule[index - 7] + (rotate(w2, 17) ^ rotate(w2, 19) ^ (w2 >> 10));
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int index = 0; index < 64; index++) {
        uint32_t t1 = h + (rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)) + ((e & f) ^ (~e & g)) +
                      ROUND_CONSTANTS[index] + schedule[index];
        uint32_t t2 = (rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

/* The hexadecimal SHA-256 of data[0:length] into hex[65]. */
static void sha256_hex(const unsigned char *data, size_t length, char hex[65]) {
    uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t offset = 0;
    for (; length - offset >= 64; offset += 64)
        compress(state, data + offset);
    unsigned char tail[128] = {0};
    size_t rest = length - offset;
    memcpy(tail, data + offset, rest);
    tail[rest] = 0x80;
    size_t blocks = rest + 9 > 64 ? 2 : 1;
    uint64_t bits = (uint64_t)length * 8;
    for (int index = 0; index < 8; index++)
        tail[blocks * 64 - 1 - index] = (unsigned char)(bits >> (8 * index));
    for (size_t block = 0; block < blocks; block++)
        compress(state, tail + 64 * block);
    for (int index = 0; index < 8; index++)
        snprintf(hex + 8 * index, 9, "%08x", state[index]);
}

/* -- the identity --------------------------------------------------------------------------- */

static int is_set(const char *name) {
    const char *value = getenv(name);
    return value != NULL && *value != '\0';
}

/* Python's locale coercion (PEP 538, Python/pylifecycle.c): with LC_ALL unset or empty and
 * PYTHONCOERCECLOCALE not 0, an interpreter whose LC_CTYPE locale is "C" (unset, C, POSIX or
 * a locale the system lacks) sets LC_CTYPE to the first of C.UTF-8, C.utf8, UTF-8 that the
 * system accepts.  0 when this program cannot tell what Python would do (the Python front then
 * runs the command). */
static int coerce_locale(void) {
    const char *coerce = getenv("PYTHONCOERCECLOCALE");
    if (coerce != NULL && *coerce != '\0' && strcmp(coerce, "0") != 0)
        return 0;  /* "1", "warn": Python may print a warning here: its own front prints it */
    if (is_set("LC_ALL") || (coerce != NULL && strcmp(coerce, "0") == 0))
        return 1;
    const char *current = setlocale(LC_CTYPE, "");
    if (current != NULL && strcmp(current, "C") != 0 && strcmp(current, "POSIX") != 0)
        return 1;
    static const char *const targets[] = {"C.UTF-8", "C.utf8", "UTF-8", NULL};
    for (const char *const *target = targets; *target != NULL; target++) {
        if (setlocale(LC_CTYPE, *target) == NULL)
            continue;
        const char *codeset = nl_langinfo(CODESET);
        if (codeset == NULL || *codeset == '\0') {
            setlocale(LC_CTYPE, "");
            continue;
        }
        return setenv("LC_CTYPE", *target, 1) == 0;
    }
    return 1;
}

/* os.path.abspath(path) into out[PATH_MAX]: joined to the working directory when relative,
 * then posixpath.normpath (".", "..", repeated slashes; exactly two leading slashes stay two). */
static int absolute_path(const char *path, char out[PATH_MAX]) {
    char joined[2 * PATH_MAX];
    if (path[0] == '/') {
        if (strlen(path) >= sizeof joined)
            return 0;
        strcpy(joined, path);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return 0;
        if ((size_t)snprintf(joined, sizeof joined, "%s%s%s", cwd, cwd[strlen(cwd) - 1] == '/' ? "" : "/", path) >= sizeof joined)
            return 0;
    }
    size_t leading = strspn(joined, "/");
    size_t length = leading == 2 ? 2 : 1;
    memcpy(out, "//", length);
    size_t starts[PATH_MAX / 2];  /* where each component kept so far begins in out */
    size_t kept = 0;
    char *cursor = joined + leading;
    while (*cursor != '\0') {
        size_t size = strcspn(cursor, "/");
        if (size == 0 || (size == 1 && cursor[0] == '.')) {
            /* nothing */
        } else if (size == 2 && cursor[0] == '.' && cursor[1] == '.') {
            if (kept > 0)
                length = starts[--kept];  /* an absolute path: ".." at its root is dropped */
        } else {
            size_t start = length;
            if (kept > 0)
                out[length++] = '/';
            if (length + size >= PATH_MAX || kept >= PATH_MAX / 2)
                return 0;
            memcpy(out + length, cursor, size);
            length += size;
            starts[kept++] = start;
        }
        cursor += size;
        cursor += strspn(cursor, "/");
    }
    out[length] = '\0';
    return 1;
}

/* The identity: its fields NUL-separated, as "\0".join(identity) in Python. */
struct identity {
    char bytes[IDENTITY_LIMIT];
    size_t used;
    int fields;
};

static int add_field(struct identity *identity, const char *text) {
    size_t size = strlen(text);
    if (identity->used + size + 1 >= IDENTITY_LIMIT)
        return 0;
    if (identity->fields++ > 0)
        identity->bytes[identity->used++] = '\0';
    memcpy(identity->bytes + identity->used, text, size);
    identity->used += size;
    return 1;
}

/* The fork server's socket for this identity into out (lamina.cli.front.cache_socket, then
 * fork_socket); 0 when there is none (a root's path that is too long). */
static int fork_socket(const char *data_root, const char *exec_root, char *out, size_t size) {
    static struct identity identity;
    char field[PATH_MAX + 64];
    if (!add_field(&identity, INTERPRETER) || !add_field(&identity, PREFIX) || !add_field(&identity, CODE_TREE) ||
        !add_field(&identity, data_root) || !add_field(&identity, exec_root))
        return 0;
    for (const char *const *name = IDENTITY_ENVIRONMENT; *name != NULL; name++) {
        const char *value = getenv(*name);
        char *entry = malloc(strlen(*name) + (value ? strlen(value) : 0) + 2);
        if (entry == NULL)
            return 0;
        sprintf(entry, "%s=%s", *name, value ? value : "");
        int added = add_field(&identity, entry);
        free(entry);
        if (!added)
            return 0;
    }
    for (const char *const *name = CACHE_NAMESPACES; *name != NULL; name++) {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/ns/%s", *name);
        ssize_t length = readlink(link, field, sizeof field - 1);
        field[length < 0 ? 0 : length] = '\0';
        if (!add_field(&identity, field))
            return 0;
    }
    uid_t euid = geteuid();
    snprintf(field, sizeof field, "%u", (unsigned)euid);
    if (!add_field(&identity, field))
        return 0;
    if (euid != 0) {  /* an unprivileged user's cgroups: /proc/self/cgroup, whole */
        static char cgroups[IDENTITY_LIMIT / 2];
        size_t used = 0;
        int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
        ssize_t got = 0;
        while (fd >= 0 && used < sizeof cgroups - 1 && (got = read(fd, cgroups + used, sizeof cgroups - 1 - used)) > 0)
            used += (size_t)got;
        if (fd >= 0)
            close(fd);
        if (got < 0 || used >= sizeof cgroups - 1 || memchr(cgroups, '\0', used) != NULL)
            return 0;  /* unread, or more than this program keeps: the Python front decides */
        cgroups[used] = '\0';
        if (!add_field(&identity, cgroups))
            return 0;
    }
    char hex[65];
    sha256_hex((const unsigned char *)identity.bytes, identity.used, hex);
    hex[KEY_LENGTH] = '\0';
    /* os.path.join(exec_root, CACHE_DIRECTORY, key + ".sock"), its ".fork.sock" sibling */
    const char *separator = exec_root[strlen(exec_root) - 1] == '/' ? "" : "/";
    int length = snprintf(out, size, "%s%s%s/%s.fork.sock", exec_root, separator, CACHE_DIRECTORY, hex);
    return length > 0 && (size_t)length < size && (size_t)length < SOCKET_PATH_LIMIT;
}

/* The data root and exec root of the engine an in-process command builds (front.py's
 * _default_engine): LAMINA_DATA_ROOT / LAMINA_EXEC_ROOT, else root's defaults, or for an
 * unprivileged user the rootless ones (lamina/config.py): $XDG_DATA_HOME/lamina or
 * $HOME/.local/share/lamina, and $XDG_RUNTIME_DIR/lamina.  0 when the Python front decides
 * (HOME unset: the password database; XDG_RUNTIME_DIR unset or relative: an error). */
static int default_roots(char data_root[PATH_MAX], char exec_root[PATH_MAX]) {
    const char *data = getenv("LAMINA_DATA_ROOT"), *exec = getenv("LAMINA_EXEC_ROOT");
    char joined[PATH_MAX];
    if (data == NULL || *data == '\0') {
        data = DEFAULT_DATA_ROOT;
        if (geteuid() != 0) {
            const char *base = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
            int length;
            if (base != NULL && *base != '\0')
                length = snprintf(joined, sizeof joined, "%s/lamina", base);
            else if (home != NULL && *home != '\0')
                length = snprintf(joined, sizeof joined, "%s/.local/share/lamina", home);
            else
                return 0;
            if (length < 0 || (size_t)length >= sizeof joined)
                return 0;
            data = joined;
        }
    }
    if (!absolute_path(data, data_root))
        return 0;
    if (exec == NULL || *exec == '\0') {
        exec = DEFAULT_EXEC_ROOT;
        if (geteuid() != 0) {
            const char *runtime = getenv("XDG_RUNTIME_DIR");
            if (runtime == NULL || runtime[0] != '/')
                return 0;
            int length = snprintf(joined, sizeof joined, "%s/lamina", runtime);
            if (length < 0 || (size_t)length >= sizeof joined)
                return 0;
            exec = joined;
        }
    }
    return absolute_path(exec, exec_root);
}

/* -- the exchange (lamina.cli.forkserver) ------------------------------------------------- */

static volatile sig_atomic_t worker;

static void relay(int number) {
    int saved = errno;
    kill(worker, number);  /* it may have ended: its status is on its way */
    errno = saved;
}

static void suspend(int number) {
    (void)number;
    int saved = errno;
    kill(worker, SIGSTOP);
    kill(getpid(), SIGSTOP);
    errno = saved;
}

static void relay_signals(void) {
    struct sigaction action = {0};
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    action.sa_handler = relay;
    for (const int *number = RELAYED; *number != 0; number++)
        sigaction(*number, &action, NULL);
    sigaction(SIGCONT, &action, NULL);
    action.sa_handler = suspend;
    sigaction(SIGTSTP, &action, NULL);
}

/* End as the worker ended, killed by signal ``number``; 128 + number when that does not end
 * this process. */
static int die_of(int number) {
    struct sigaction action = {0};
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(number, &action, NULL);
    sigset_t unblocked;
    sigemptyset(&unblocked);
    sigaddset(&unblocked, number);
    sigprocmask(SIG_UNBLOCK, &unblocked, NULL);
    kill(getpid(), number);
    return 128 + number;
}

/* The request: LENGTH "\n" "1" NUL umask NUL argc NUL words... NUL environment... (each
 * variable as KEY=VALUE, as os.environb holds them: the first of a repeated name). */
static char *encode_request(int count, char **words, size_t *size) {
    mode_t mask = umask(022);
    umask(mask);
    size_t variables = 0;
    for (char **entry = environ; *entry != NULL; entry++)
        variables++;
    size_t payload = 64;
    for (int index = 0; index < count; index++)
        payload += strlen(words[index]) + 1;
    for (size_t index = 0; index < variables; index++)
        payload += strlen(environ[index]) + 1;
    char *body = malloc(payload);
    if (body == NULL)
        return NULL;
    size_t used = (size_t)sprintf(body, "%s%c%u%c%d", REQUEST_VERSION, 0, (unsigned)mask, 0, count);
    for (int index = 0; index < count; index++) {
        body[used++] = '\0';
        size_t length = strlen(words[index]);
        memcpy(body + used, words[index], length);
        used += length;
    }
    for (size_t index = 0; index < variables; index++) {
        const char *entry = environ[index];
        const char *equals = strchr(entry, '=');
        if (equals == NULL)
            continue;  /* not a variable: os.environ skips it */
        size_t name = (size_t)(equals - entry);
        int repeated = 0;
        for (size_t earlier = 0; earlier < index && !repeated; earlier++)
            repeated = strncmp(environ[earlier], entry, name + 1) == 0;
        if (repeated)
            continue;  /* os.environ keeps a name's first value */
        body[used++] = '\0';
        size_t length = strlen(entry);
        memcpy(body + used, entry, length);
        used += length;
    }
    char head[32];
    int head_size = snprintf(head, sizeof head, "%zu\n", used);
    char *message = malloc(used + (size_t)head_size);
    if (message == NULL) {
        free(body);
        return NULL;
    }
    memcpy(message, head, (size_t)head_size);
    memcpy(message + head_size, body, used);
    free(body);
    *size = used + (size_t)head_size;
    return message;
}

/* Send the request with descriptors 0-2 and the working directory; 0 when it went short. */
static int send_request(int sock, const char *message, size_t size) {
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0)
        return 0;
    int descriptors[4] = {0, 1, 2, cwd};
    union {
        char buffer[CMSG_SPACE(sizeof descriptors)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec vector = {(void *)message, size};
    struct msghdr header = {.msg_iov = &vector, .msg_iovlen = 1,
                            .msg_control = control.buffer, .msg_controllen = sizeof control.buffer};
    struct cmsghdr *rights = CMSG_FIRSTHDR(&header);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof descriptors);
    memcpy(CMSG_DATA(rights), descriptors, sizeof descriptors);
    ssize_t sent;
    do
        sent = sendmsg(sock, &header, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    close(cwd);
    if (sent < 0)
        return 0;
    while ((size_t)sent < size) {
        ssize_t more = send(sock, message + sent, size - (size_t)sent, MSG_NOSIGNAL);
        if (more < 0 && errno == EINTR)
            continue;
        if (more <= 0)
            return 0;
        sent += more;
    }
    return 1;
}

/* The next line from the fork server or its worker, without its newline; NULL at the end. */
static char *next_line(int sock) {
    static char buffer[4096];
    static size_t held, consumed;
    if (consumed > 0) {
        memmove(buffer, buffer + consumed, held - consumed);
        held -= consumed;
        consumed = 0;
    }
    for (;;) {
        char *newline = memchr(buffer, '\n', held);
        if (newline != NULL) {
            *newline = '\0';
            consumed = (size_t)(newline - buffer) + 1;
            return buffer;
        }
        if (held == sizeof buffer)
            return NULL;
        ssize_t size = read(sock, buffer + held, sizeof buffer - held);
        if (size < 0 && errno == EINTR)
            continue;
        if (size <= 0)
            return NULL;
        held += (size_t)size;
    }
}

/* "P123" -> 'P', 123; 0 when the line is not a letter and decimal digits (int range). */
static int parse_line(const char *line, long *number) {
    if (line == NULL || line[0] == '\0' || line[1] == '\0')
        return 0;
    long value = 0;
    for (const char *digit = line + 1; *digit != '\0'; digit++) {
        if (*digit < '0' || *digit > '9' || value > (INT_MAX - 9) / 10)
            return 0;
        value = value * 10 + (*digit - '0');
    }
    *number = value;
    return line[0];
}

int main(int argc, char **argv) {
    arguments = argv;
    argument_count = argc;
    if (argc < 2 || (argv[1][0] == '-' && argv[1][1] != '\0'))
        python_front();  /* a global option, or no command */
    for (const char *const *name = NOT_FORKED; *name != NULL; name++)
        if (strcmp(argv[1], *name) == 0)
            python_front();
    const char *forward = getenv("LAMINA_FORWARD");
    if ((forward != NULL && strcmp(forward, "0") == 0) || is_set("LAMINA_HOST") || is_set("DOCKER_HOST"))
        python_front();
    for (const char *const *name = ENGINE_ENVIRONMENT; *name != NULL; name++)
        if (is_set(*name))
            python_front();
    if (!coerce_locale())
        python_front();
    char data_root[PATH_MAX], exec_root[PATH_MAX], path[PATH_MAX + 128];
    if (!default_roots(data_root, exec_root) || !fork_socket(data_root, exec_root, path, sizeof path))
        python_front();
    struct stat status;
    for (int fd = 0; fd < 3; fd++)
        if (fstat(fd, &status) != 0)
            python_front();
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    memcpy(address.sun_path, path, strlen(path) + 1);
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) != 0)
        python_front();  /* no fork server here: it runs the command and starts the cache */
    size_t size = 0;
    char *message = encode_request(argc - 1, argv + 1, &size);
    if (message == NULL || !send_request(sock, message, size)) {
        close(sock);
        python_front();
    }
    free(message);
    long number = 0;
    char *line;
    int kind = 0;
    int running = 0;
    while ((kind = parse_line(line = next_line(sock), &number)) != 0) {
        if (kind != 'P' || running)
            break;
        worker = (sig_atomic_t)number;  /* the worker's first words: the command runs */
        running = 1;
        relay_signals();
    }
    close(sock);
    if (!running)
        python_front();  /* refused, or the fork server left: nothing ran */
    if (kind == 'X')
        return (int)number;
    if (kind == 'K')
        return die_of((int)number);
    dprintf(2, "Error: the engine cache's fork server went away while the command ran\n");
    return 125;
}
