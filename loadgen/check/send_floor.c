// What one send() per delivery costs on this machine, with nothing else: N connected loopback
// TCP pairs, one thread sends a 140-byte WebSocket-sized message to each server side R times a
// second, another reads the client sides with epoll (as a subscriber would). Prints the sending
// thread's CPU per send: the floor under a server that sends each delivery with its own
// send(). See docs/performance.md, "Performance round two". Usage: send_floor [N] [R] [SECONDS]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
static int n, rate, secs, *clients, *servers;
static volatile int done;
static long long received;
static void *reader(void *arg) {
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = clients[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, clients[i], &ev);
  }
  struct epoll_event evs[256];
  char buf[65536];
  while (!done) {
    int k = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < k; i++) {
      ssize_t r = read(evs[i].data.fd, buf, sizeof buf);
      if (r > 0) received += r;
    }
  }
  return 0;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  n = argc > 1 ? atoi(argv[1]) : 1000; rate = argc > 2 ? atoi(argv[2]) : 50; secs = argc > 3 ? atoi(argv[3]) : 10;
  clients = calloc(n, sizeof(int)); servers = calloc(n, sizeof(int));
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bind(l, (void *)&a, sizeof a); listen(l, 4096);
  socklen_t al = sizeof a; getsockname(l, (void *)&a, &al);
  int one = 1;
  for (int i = 0; i < n; i++) {
    clients[i] = socket(AF_INET, SOCK_STREAM, 0);
    connect(clients[i], (void *)&a, sizeof a);
    servers[i] = accept(l, 0, 0);
    setsockopt(servers[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(servers[i], F_SETFL, O_NONBLOCK);
  }
  pthread_t t; pthread_create(&t, 0, reader, 0);
  char msg[140]; memset(msg, 'x', sizeof msg); msg[0] = (char)0x81; msg[1] = 138;
  struct rusage r0, r1; getrusage(RUSAGE_THREAD, &r0);
  double start = now(); long long sends = 0;
  for (int round = 0; round < rate * secs; round++) {
    double at = start + (double)round / rate;
    while (now() < at) { struct timespec s = {0, 200000}; nanosleep(&s, 0); }
    for (int i = 0; i < n; i++) if (send(servers[i], msg, sizeof msg, MSG_NOSIGNAL) == sizeof msg) sends++;
  }
  getrusage(RUSAGE_THREAD, &r1);
  done = 1; pthread_join(t, 0);
  double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6
             + (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  printf("{\"connections\": %d, \"rate\": %d, \"sends\": %lld, \"sender_cpu_ns_per_send\": %.0f, \"received_bytes\": %lld}\n", n, rate, sends, cpu / sends * 1e9, received);
  return 0;
}
