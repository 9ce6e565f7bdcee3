#ifndef CLIBPQ_SHIM_H
#define CLIBPQ_SHIM_H
// pkg-config's cflags for libpq put its include directory on the path, so no absolute path here.
#include <libpq-fe.h>
#include <poll.h>
#include <dlfcn.h>
#include <pthread.h>

static pthread_once_t clibpq_ssl_pending_once = PTHREAD_ONCE_INIT;
static int (*clibpq_ssl_pending)(const void *) = NULL;

static inline void clibpq_find_ssl_pending(void) {
    void *process = dlopen(NULL, RTLD_NOW);
    if (process != NULL) clibpq_ssl_pending = (int (*)(const void *))dlsym(process, "SSL_pending");
}

/// Whether OpenSSL holds decrypted bytes of this connection that libpq has not read yet.
/// A TLS record can carry more than one `PQconsumeInput` takes in; what is left waits in
/// OpenSSL, where no socket readiness shows it, so a caller must read again before it
/// waits on the socket (as libpq's own waits do). `SSL_pending` is looked up in the
/// process, where libpq's OpenSSL is loaded, so nothing here links OpenSSL itself.
static inline int clibpq_tls_read_pending(PGconn *connection) {
    if (!PQsslInUse(connection)) return 0;
    void *ssl = PQsslStruct(connection, "OpenSSL");
    if (ssl == NULL) return 0;
    // Looked up once for the process; connections on several threads may ask at once.
    pthread_once(&clibpq_ssl_pending_once, clibpq_find_ssl_pending);
    // Always found where libpq uses OpenSSL, which is the only library PQsslStruct names.
    return clibpq_ssl_pending != NULL && clibpq_ssl_pending(ssl) > 0;
}

#ifdef __linux__
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <stdint.h>
#include <unistd.h>

// epoll for the Postgres target's socket reactor. Wrapped here because `struct epoll_event`
// is packed on x86-64, which Swift does not import field by field.

/// Arms `fd` once (EPOLLONESHOT) for reading, or for reading and writing when `writable`,
/// adding it to the set if it is not there yet (a new socket, or one that reused the number
/// of a closed one, which the kernel already dropped).
static inline int clibpq_epoll_arm(int epfd, int fd, int writable) {
    struct epoll_event event = {0};
    event.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT | (writable ? EPOLLOUT : 0);
    event.data.fd = fd;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event) == 0) return 0;
    if (errno != ENOENT) return -1;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event);
}

/// Removes `fd` from the set, before its socket is closed.
static inline int clibpq_epoll_forget(int epfd, int fd) {
    struct epoll_event event = {0};
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &event);
}

/// Waits up to `timeout_ms` (-1: without a limit) and writes the ready descriptors to
/// `fds`; returns how many (0 when the time ran out), or -1 with errno set.
static inline int clibpq_epoll_wait(int epfd, int *fds, int capacity, int timeout_ms) {
    struct epoll_event events[64];
    int count = epoll_wait(epfd, events, capacity < 64 ? capacity : 64, timeout_ms);
    for (int index = 0; index < count; index++) fds[index] = events[index].data.fd;
    return count;
}

/// An eventfd in the set (level-triggered, for reading), to wake a waiting `epoll_wait`;
/// returns the eventfd, or -1.
static inline int clibpq_epoll_add_wakeup(int epfd) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return -1;
    struct epoll_event event = {0};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) != 0) return -1;
    return fd;
}

/// Wakes the `epoll_wait` watching `fd` (an eventfd from `clibpq_epoll_add_wakeup`).
static inline void clibpq_wakeup_signal(int fd) {
    uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
}

/// Takes the wake-up back, so the level-triggered eventfd stops being ready.
static inline void clibpq_wakeup_drain(int fd) {
    uint64_t count;
    (void)!read(fd, &count, sizeof count);
}
#endif

#endif
