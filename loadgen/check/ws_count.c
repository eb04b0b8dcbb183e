/*
 * ws_count: an independent WebSocket subscriber for checking livebridge-load's throughput.
 *
 * Shares no code, runtime or parser with the load tool: C, one thread, epoll, a hand-written
 * frame parser. Opens N WebSockets to HOST:PORT/ws, subscribes each to CHANNEL, waits for
 * every `subscribed` reply, then counts the text frames that arrive (answering pings) until
 * SECONDS have passed or SIGINT/SIGTERM. Prints one status line a second on stderr and, at
 * the end, one JSON line on stdout: frames, first/last frame time, frames per second between
 * them, and per-second counts.
 *
 * Build: cc -O2 -o ws_count ws_count.c
 * Run:   ./ws_count 127.0.0.1 5100 1000 jobs 30
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    uint8_t head[14];   /* a frame header being assembled */
    int head_len;
    uint64_t remaining; /* payload bytes of the current frame still to skip */
    int opcode;
    int subscribed;
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) { perror(what); exit(1); }

/* A client frame (masked with a zero key, which RFC 6455 allows). */
static void send_frame(int fd, int opcode, const char *payload, size_t len) {
    uint8_t frame[256];
    size_t n = 0;
    if (len > 125) { fprintf(stderr, "frame too long\n"); exit(1); }
    frame[n++] = 0x80 | opcode;
    frame[n++] = 0x80 | (uint8_t)len;
    memset(frame + n, 0, 4); n += 4;
    memcpy(frame + n, payload, len); n += len;
    if (write(fd, frame, n) != (ssize_t)n) die("write");
}

static uint64_t frames, bytes_in;

/* Walks `len` bytes of a connection's stream: headers are parsed, payloads skipped, except
 * the first bytes of a text frame before `subscribed`, which are checked for that reply. */
static void feed(struct conn *c, const uint8_t *p, size_t len, int *newly_subscribed) {
    while (len > 0) {
        if (c->remaining > 0) {
            size_t take = c->remaining < len ? c->remaining : len;
            if (!c->subscribed && c->opcode == 1 && memmem(p, take, "\"subscribed\"", 12)) {
                c->subscribed = 1;
                (*newly_subscribed)++;
            }
            c->remaining -= take; p += take; len -= take;
            continue;
        }
        c->head[c->head_len++] = *p++; len--;
        if (c->head_len < 2) continue;
        int len7 = c->head[1] & 0x7f;
        int need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
        if (c->head_len < need) continue;
        uint64_t plen = len7;
        if (len7 == 126) plen = (c->head[2] << 8) | c->head[3];
        if (len7 == 127) { plen = 0; for (int i = 2; i < 10; i++) plen = (plen << 8) | c->head[i]; }
        c->opcode = c->head[0] & 0x0f;
        c->head_len = 0;
        c->remaining = plen;
        if (c->opcode == 1 && c->subscribed) frames++;
        if (c->opcode == 9) {
            /* Ping: answer with an empty pong (its payload is not needed by the server). */
            send_frame(c->fd, 0xA, "", 0);
        }
        if (c->opcode == 8) { fprintf(stderr, "server closed a connection\n"); }
    }
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: %s HOST PORT N CHANNEL SECONDS\n", argv[0]); return 2; }
    const char *host = argv[1];
    int port = atoi(argv[2]), n = atoi(argv[3]);
    const char *channel = argv[4];
    double seconds = atof(argv[5]);
    signal(SIGINT, on_signal); signal(SIGTERM, on_signal); signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    struct conn *conns = calloc(n, sizeof *conns);
    int ep = epoll_create1(0);
    char request[512], subscribe[128], reply[4096];
    snprintf(request, sizeof request,
             "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             host, port);
    int sub_len = snprintf(subscribe, sizeof subscribe,
                           "{\"type\":\"subscribe\",\"channels\":[\"%s\"]}", channel);
    int subscribed = 0;
    for (int i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0) die("socket");
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (write(c->fd, request, strlen(request)) < 0) die("write");
        /* Read the 101 head; whatever follows it is frames. */
        size_t got = 0;
        char *end = NULL;
        while (!end) {
            ssize_t r = read(c->fd, reply + got, sizeof reply - got - 1);
            if (r <= 0) die("handshake read");
            got += r; reply[got] = 0;
            end = strstr(reply, "\r\n\r\n");
        }
        if (strncmp(reply, "HTTP/1.1 101", 12) != 0) { fprintf(stderr, "handshake: %.60s\n", reply); return 1; }
        size_t head = end + 4 - reply;
        feed(c, (uint8_t *)reply + head, got - head, &subscribed);
        send_frame(c->fd, 1, subscribe, sub_len);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }

    static uint8_t buf[1 << 16];
    struct epoll_event events[256];
    double started = now(), ready_at = 0, first = 0, last = 0, tick = started;
    uint64_t at_tick = 0, series[3600];
    int seconds_seen = 0, said_ready = 0;
    while (!stop && now() - started < seconds) {
        int k = epoll_wait(ep, events, 256, 100);
        if (k < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < k; e++) {
            struct conn *c = events[e].data.ptr;
            for (;;) {
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r <= 0) { fprintf(stderr, "connection lost\n"); epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); break; }
                bytes_in += r;
                uint64_t before = frames;
                feed(c, buf, r, &subscribed);
                if (frames != before) {
                    last = now();
                    if (first == 0) first = last;
                }
                if (r < (ssize_t)sizeof buf) break;
            }
        }
        if (!said_ready && subscribed == n) {
            said_ready = 1; ready_at = now();
            fprintf(stderr, "ready: %d subscribed in %.2fs\n", n, ready_at - started);
            fflush(stderr);
        }
        double t = now();
        if (t - tick >= 1.0) {
            if (seconds_seen < 3600) series[seconds_seen++] = frames - at_tick;
            fprintf(stderr, "[%6.1fs] frames %llu  %.0f/s\n", t - started,
                    (unsigned long long)frames, (frames - at_tick) / (t - tick));
            at_tick = frames; tick = t;
        }
    }
    printf("{\"connections\":%d,\"subscribed\":%d,\"frames\":%llu,\"bytes\":%llu,"
           "\"window_secs\":%.6f,\"frames_per_sec\":%.1f,\"per_second\":[",
           n, subscribed, (unsigned long long)frames, (unsigned long long)bytes_in,
           last - first, last > first ? frames / (last - first) : 0.0);
    for (int i = 0; i < seconds_seen; i++) printf("%s%llu", i ? "," : "", (unsigned long long)series[i]);
    printf("]}\n");
    return 0;
}
