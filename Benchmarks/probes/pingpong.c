// Round trips of a 40-byte message between two processes over TCP on loopback, with the
// reader waiting four ways: `b` epoll_wait that sleeps, `t` epoll_wait woken by a 1 us
// timer, `e` epoll_wait with a zero timeout in a spin (polling), `y` the same with a
// sched_yield after each empty poll (how BusyPoll waits). 20,000 round trips.
// With `pin`, the two processes are bound to CPUs 0 and 1; each prints the CPUs it ran
// its round trips on (a kernel that packs threads onto one vCPU shows here).
//   gcc -O2 pingpong.c -o pingpong && for m in b t e y; do ./pingpong $m; ./pingpong $m pin; done
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char mode;
static int ep, tfd;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void wait_readable(int fd) {
    struct epoll_event ev[4];
    for (;;) {
        int n;
        if (mode == 'b') {
            n = epoll_wait(ep, ev, 4, -1);
        } else if (mode == 'e') {
            n = epoll_wait(ep, ev, 4, 0);
        } else if (mode == 'y') {
            n = epoll_wait(ep, ev, 4, 0);
            if (n == 0) sched_yield();
        } else {
            struct itimerspec its = {0};
            its.it_value.tv_nsec = 1000;
            timerfd_settime(tfd, 0, &its, 0);
            n = epoll_wait(ep, ev, 4, -1);
        }
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == fd) return;
            uint64_t expirations;
            if (read(tfd, &expirations, 8) < 0) {}
        }
    }
}

static void read_exactly(int fd, char *buffer, int count) {
    for (int got = 0; got < count;) {
        int r = recv(fd, buffer + got, count - got, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN) { wait_readable(fd); continue; }
        if (r <= 0) { perror("recv"); exit(1); }
        got += r;
    }
}

static void setup(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ep = epoll_create1(0);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event e = {.events = EPOLLIN};
    e.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    e.data.fd = tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e);
}

static void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

// Bit i set: a round trip ran on CPU i (sampled once per round trip).
static unsigned long cpus_seen;

static void note_cpu(void) {
    int cpu = sched_getcpu();
    if (cpu >= 0 && cpu < 64) cpus_seen |= 1ul << cpu;
}

static void print_cpus(const char *who) {
    printf("%s ran on CPUs:", who);
    for (int i = 0; i < 64; i++) if (cpus_seen & (1ul << i)) printf(" %d", i);
    printf("\n");
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: pingpong b|t|e|y [pin]\n"); return 1; }
    mode = argv[1][0];
    int pin = argc > 2;
    int n = 20000;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    bind(listener, (struct sockaddr *)&address, sizeof address);
    listen(listener, 1);
    socklen_t length = sizeof address;
    getsockname(listener, (struct sockaddr *)&address, &length);
    char buffer[64] = {0};
    if (fork() == 0) {
        if (pin) pin_to(1);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        connect(c, (struct sockaddr *)&address, sizeof address);
        setup(c);
        for (int i = 0; i < n; i++) { read_exactly(c, buffer, 40); send(c, buffer, 40, 0); note_cpu(); }
        print_cpus("answering process");
        exit(0);
    }
    if (pin) pin_to(0);
    int s = accept(listener, 0, 0);
    setup(s);
    double *latency = malloc(n * sizeof *latency);
    for (int i = 0; i < n; i++) {
        double start = now();
        send(s, buffer, 40, 0);
        read_exactly(s, buffer, 40);
        latency[i] = now() - start;
        note_cpu();
    }
    wait(0);
    print_cpus("calling process");
    qsort(latency, n, sizeof *latency, compare);
    printf("%c%s: p50 %.1f us, p90 %.1f us, p99 %.1f us\n", mode, pin ? " pinned" : "", latency[n / 2], latency[n * 9 / 10], latency[n * 99 / 100]);
    return 0;
}
