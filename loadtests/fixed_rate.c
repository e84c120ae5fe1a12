/* An open-loop, fixed-rate HTTP/1.1 load generator (Debian has no wrk2): `make bench-edge`'s latency at 80 %.

   fixed_rate HOST PORT RATE SECONDS CONNECTIONS REQUEST_FILE [DEPTH [TRACE_FILE]]

   Request i is due at start + i / RATE and belongs to connection i % CONNECTIONS. It is written as soon as it
   is due if fewer than DEPTH requests of that connection await their answers (DEPTH 1, the default: one at a
   time, as a phone's browser and wrk2 send them), else as soon as one is answered; DEPTH 0 writes every
   request when due (pipelining without limit). Either way each latency is counted from the request's due
   time, not from when it was written (no coordinated omission): a stalled server cannot hide its stall by
   slowing the client down. One epoll loop; a timerfd wakes it at the next due time, and every request due by
   then leaves in one write per connection. Answers are framed by their head and `content-length`. All
   latencies are kept and sorted at the end (exact percentiles). Prints one line of `key=value` pairs.
   TRACE_FILE, if given, gets a line per answer in the order they came: its request's due time (ns since the
   first was due) and its latency (ns) — when a stall began and how long the catching up took.
   Build: cc -O2 -o fixed_rate fixed_rate.c   (loadtests/fixed_rate.py does it at run time). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define GRACE_NS 10000000000LL /* how long unanswered requests are waited for after the last one is due */
/* The timer wakes the loop at most this often: requests falling due in between leave together, up to this
   late (their latency still counts from when they were due). A wake-up per request cost three system calls,
   and the client shares its core with Redis, which the edge waits for. */
#define TICK_NS 100000LL

typedef struct {
    int fd;
    long long *due; /* due times of requests written or to write, oldest first (a ring) */
    size_t head, count, capacity;
    size_t written; /* of those `count`, how many were written (the oldest ones) */
    char *out; /* bytes not yet written */
    size_t out_len, out_cap;
    char *in; /* bytes read, not yet framed */
    size_t in_len, in_cap;
    int want_out, dead;
} conn_t;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *grow(void *p, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return p;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(p, n * item);
    if (!q) { perror("realloc"); exit(2); }
    *cap = n;
    return q;
}

static void push_due(conn_t *c, long long due) {
    if (c->count == c->capacity) {
        size_t old = c->capacity, n = old ? old * 2 : 64;
        long long *d = malloc(n * sizeof *d);
        if (!d) { perror("malloc"); exit(2); }
        for (size_t k = 0; k < c->count; k++) d[k] = c->due[(c->head + k) % old];
        free(c->due);
        c->due = d; c->head = 0; c->capacity = n;
    }
    c->due[(c->head + c->count) % c->capacity] = due;
    c->count++;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static long long *latencies;
static long long *dues; /* of the answered requests, for TRACE_FILE */
static size_t answered, latencies_cap, dues_cap;
static long long bad, errors, unsent;
static char request[65536];
static size_t request_len, depth = 1;

/* Queue the connection's due requests for writing, up to `depth` awaiting answers (0: no limit). */
static void release(conn_t *c) {
    while (c->written < c->count && (depth == 0 || c->written < depth)) {
        c->out = grow(c->out, &c->out_cap, c->out_len + request_len, 1);
        memcpy(c->out + c->out_len, request, request_len);
        c->out_len += request_len;
        c->written++;
    }
}

static void set_out_interest(int ep, conn_t *c, int want) {
    if (c->want_out == want || c->dead) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void kill_conn(int ep, conn_t *c) {
    if (c->dead) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->dead = 1;
    errors++;
}

static void flush_out(int ep, conn_t *c) {
    while (c->out_len && !c->dead) {
        ssize_t n = write(c->fd, c->out, c->out_len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            kill_conn(ep, c);
            return;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    set_out_interest(ep, c, c->out_len > 0);
}

/* Frame the answers in c->in; returns 0, or -1 when the stream cannot be understood. */
static int frame(conn_t *c, long long now) {
    size_t start = 0;
    for (;;) {
        char *base = c->in + start;
        size_t avail = c->in_len - start;
        char *end = memmem(base, avail, "\r\n\r\n", 4);
        if (!end) break;
        size_t head = (size_t)(end - base) + 4;
        if (avail < 12 || memcmp(base, "HTTP/1.", 7) != 0) return -1;
        int status = atoi(base + 9);
        long long length = 0;
        for (char *line = memchr(base, '\n', head); line && line < end; line = memchr(line + 1, '\n', (size_t)(end - line))) {
            if ((size_t)(end - line) > 16 && strncasecmp(line + 1, "content-length:", 15) == 0) {
                length = atoll(line + 16);
                break;
            }
        }
        if (avail < head + (size_t)length) break;
        if (status == 100) { start += head; continue; } /* interim: the final answer follows */
        if (!c->written) return -1; /* an answer to nothing */
        long long due = c->due[c->head];
        c->head = (c->head + 1) % c->capacity;
        c->count--;
        c->written--;
        release(c);
        latencies = grow(latencies, &latencies_cap, answered + 1, sizeof *latencies);
        dues = grow(dues, &dues_cap, answered + 1, sizeof *dues);
        dues[answered] = due;
        latencies[answered++] = now - due;
        if (status < 200 || status >= 400) bad++;
        start += head + (size_t)length;
    }
    if (start) {
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
    }
    return 0;
}

static void read_in(int ep, conn_t *c) {
    for (;;) {
        c->in = grow(c->in, &c->in_cap, c->in_len + 65536, 1);
        size_t space = c->in_cap - c->in_len;
        ssize_t n = read(c->fd, c->in + c->in_len, space);
        if (n > 0) {
            c->in_len += (size_t)n;
            if (frame(c, now_ns()) < 0) { kill_conn(ep, c); return; }
            if ((size_t)n < space) return; /* drained: epoll (level-triggered) says when more arrives */
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0 && errno == EINTR) continue;
        kill_conn(ep, c); /* closed by the server, or an error */
        return;
    }
}

int main(int argc, char **argv) {
    if (argc < 7 || argc > 9) {
        fprintf(stderr, "usage: %s HOST PORT RATE SECONDS CONNECTIONS REQUEST_FILE [DEPTH [TRACE_FILE]]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), nconn = atoi(argv[5]);
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    FILE *f = fopen(argv[6], "rb");
    if (!f) { perror(argv[6]); return 2; }
    request_len = fread(request, 1, sizeof request, f);
    fclose(f);
    if (argc >= 8) depth = (size_t)atol(argv[7]);
    if (rate <= 0 || seconds <= 0 || nconn <= 0 || !request_len) { fprintf(stderr, "bad arguments\n"); return 2; }

    int ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { fprintf(stderr, "HOST must be an IPv4 address\n"); return 2; }
    for (int k = 0; k < nconn; k++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        conns[k].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[k]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    long long total = (long long)(rate * seconds), sent = 0;
    double interval = 1e9 / rate;
    long long start = now_ns() + 1000000; /* 1 ms from now */
    long long last_due = start + (long long)((double)(total - 1) * interval);
    struct epoll_event events[256];
    int timer_armed = 0;
    for (;;) {
        long long now = now_ns();
        while (sent < total) { /* everything due by now leaves now, one write per connection */
            long long due = start + (long long)((double)sent * interval);
            if (due > now) break;
            conn_t *c = &conns[sent % nconn];
            sent++;
            if (c->dead) { unsent++; continue; } /* the server closed it: counted as unanswered */
            push_due(c, due);
            release(c);
        }
        for (int k = 0; k < nconn; k++)
            if (conns[k].out_len && !conns[k].want_out) flush_out(ep, &conns[k]);
        size_t outstanding = 0;
        for (int k = 0; k < nconn; k++) if (!conns[k].dead) outstanding += conns[k].count;
        if (sent >= total && (outstanding == 0 || now > last_due + GRACE_NS)) break;
        if (sent < total && !timer_armed) {
            long long next = start + (long long)((double)sent * interval);
            if (next < now + TICK_NS) next = now + TICK_NS;
            struct itimerspec its = {.it_value = {.tv_sec = next / 1000000000LL, .tv_nsec = next % 1000000000LL}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            timer_armed = 1;
        }
        int n = epoll_wait(ep, events, 256, sent < total ? -1 : 100);
        for (int k = 0; k < n; k++) {
            conn_t *c = events[k].data.ptr;
            if (!c) {
                unsigned long long expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) perror("timerfd");
                timer_armed = 0;
                continue;
            }
            if (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_in(ep, c);
            if (!c->dead && (events[k].events & EPOLLOUT)) flush_out(ep, c);
        }
    }
    long long finished = now_ns();
    long long unanswered = unsent;
    for (int k = 0; k < nconn; k++) {
        unanswered += (long long)conns[k].count;
        if (!conns[k].dead) close(conns[k].fd);
    }
    if (argc == 9) {
        FILE *trace = fopen(argv[8], "w");
        if (!trace) { perror(argv[8]); return 2; }
        for (size_t k = 0; k < answered; k++) fprintf(trace, "%lld %lld\n", dues[k] - start, latencies[k]);
        if (fclose(trace) != 0) { perror(argv[8]); return 2; }
    }
    qsort(latencies, answered, sizeof *latencies, cmp_ll);
#define PCT(p) (answered ? (double)latencies[(size_t)((double)(answered - 1) * (p))] / 1e6 : -1.0)
    /* achieved: answers per second from the first due time to the last answer (waiting included) */
    printf("due=%lld answered=%zu bad=%lld unanswered=%lld connection_errors=%lld seconds=%.3f offered=%.1f "
           "achieved=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
           total, answered, bad, unanswered, errors, (double)(finished - start) / 1e9, rate,
           (double)answered / ((double)(finished - start) / 1e9), PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999),
           answered ? (double)latencies[answered - 1] / 1e6 : -1.0);
    return 0;
}
