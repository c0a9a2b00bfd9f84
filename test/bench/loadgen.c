/*
 * saslauthd-loadgen: drives a saslauthd socket the way real clients do, one
 * request per connection, from C threads, so the generator is never the
 * bottleneck. Prints one JSON object.
 *
 *   saslauthd-loadgen -s SOCKET -c CONC -d SECONDS -u USER -p PASS
 *                     [-S service] [-r realm] [-i IDLE] [-w WRONG -W WRONGPASS]
 *                     [-m guess|spray] [-P dovecot] [-g GAP_US]
 *
 * -P dovecot: the socket speaks Dovecot's auth protocol (--dovecot-socket), as
 *    Postfix's smtpd_sasl_type = dovecot does: each thread keeps one
 *    connection (handshake once) and sends AUTH PLAIN on it, one at a time,
 *    with its own rip= (10.<n>.<n>.<n>); the realm, if any, as user@realm.
 *    FAIL counts as NO; a closed connection (a temporary failure) as an error.
 * -i IDLE: hold IDLE extra connections open (sending nothing) during the run.
 * -w WRONG: WRONG extra threads keep sending WRONGPASS (not measured).
 * -m guess: every request carries a new password (PASS-<thread>-<n>), as a
 *    guesser's do; -m spray: a new login every time (USER<thread>x<n>).
 * -g GAP_US: each measured thread waits GAP_US microseconds after each answer
 *    before its next request, as a client whose requests come spaced (a
 *    mechanism asked only after another one's work).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct req {
  unsigned char buf[1100];
  size_t len;
};

enum mode { FIXED, GUESS, SPRAY };

/* A thread's persistent Dovecot-protocol connection. */
struct dconn {
  int fd;
  char buf[8192];
  size_t got;
  unsigned id;
};

struct worker {
  pthread_t tid;
  struct dconn dc;
  const struct req* rq;
  /* The same credentials as rq, for -P dovecot. */
  const char *rq_user, *rq_pass;
  int mode;
  int index;
  int measured;
  uint64_t n, ok, no, err;
  uint32_t* lat; /* microseconds */
  size_t cap;
};

static const char* g_socket;
static int g_dovecot;
static const char *g_user, *g_pass, *g_service, *g_realm;
static volatile int g_stop;
static useconds_t g_gap_us;
static struct timeval g_io_timeout = {30, 0};

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void put(struct req* r, const char* s) {
  size_t n = strlen(s);
  r->buf[r->len++] = (unsigned char)(n >> 8);
  r->buf[r->len++] = (unsigned char)(n & 0xff);
  memcpy(r->buf + r->len, s, n);
  r->len += n;
}

static int connect_socket(int nonblock) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  strncpy(sa.sun_path, g_socket, sizeof sa.sun_path - 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  /* A stalled daemon must not hold a thread past the run: bound connect
     (a full backlog blocks it), write and read. */
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &g_io_timeout, sizeof g_io_timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &g_io_timeout, sizeof g_io_timeout);
  if (connect(fd, (struct sockaddr*)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* 1 = OK, 0 = NO, -1 = error */
static int one_request(const struct req* rq) {
  int fd = connect_socket(0);
  if (fd < 0) return -1;
  if (write(fd, rq->buf, rq->len) != (ssize_t)rq->len) {
    close(fd);
    return -1;
  }
  unsigned char in[1100];
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fd, in + got, sizeof in - got);
    if (r <= 0) break;
    got += (size_t)r;
    if (got >= 2 && got >= 2u + ((size_t)in[0] << 8 | in[1])) break;
  }
  close(fd);
  if (got < 4) return -1;
  return (in[2] == 'O' && in[3] == 'K') ? 1 : 0;
}

static void b64(const unsigned char* in, size_t n, char* out) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? a[v & 63] : '=';
  }
  out[o] = 0;
}

/* The next line from the connection (LF stripped) into line; -1 on EOF or error. */
static int read_line(struct dconn* c, char* line, size_t cap) {
  for (;;) {
    char* nl = memchr(c->buf, '\n', c->got);
    if (nl != NULL) {
      size_t n = (size_t)(nl - c->buf);
      if (n >= cap) return -1;
      memcpy(line, c->buf, n);
      line[n] = 0;
      c->got -= n + 1;
      memmove(c->buf, nl + 1, c->got);
      return (int)n;
    }
    if (c->got == sizeof c->buf) return -1;
    ssize_t r = read(c->fd, c->buf + c->got, sizeof c->buf - c->got);
    if (r <= 0) return -1;
    c->got += (size_t)r;
  }
}

static void dovecot_close(struct dconn* c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->got = 0;
}

/* Connect and do the handshake: our VERSION and CPID, the server's lines up to DONE. */
static int dovecot_open(struct dconn* c) {
  c->fd = connect_socket(0);
  c->got = 0;
  if (c->fd < 0) return -1;
  char hello[64];
  int n = snprintf(hello, sizeof hello, "VERSION\t1\t0\nCPID\t%d\n", (int)getpid());
  if (write(c->fd, hello, (size_t)n) != n) {
    dovecot_close(c);
    return -1;
  }
  char line[1024];
  for (;;) {
    if (read_line(c, line, sizeof line) < 0) {
      dovecot_close(c);
      return -1;
    }
    if (strcmp(line, "DONE") == 0) return 0;
  }
}

/* 1 = OK, 0 = FAIL, -1 = error (the connection is then reopened for the next request). */
static int dovecot_request(struct worker* w, const char* user, const char* pass) {
  struct dconn* c = &w->dc;
  if (c->fd < 0 && dovecot_open(c) < 0) return -1;
  unsigned char plain[700];
  size_t ul = strlen(user), rl = strlen(g_realm), pl = strlen(pass), n = 0;
  plain[n++] = 0;
  memcpy(plain + n, user, ul);
  n += ul;
  if (rl > 0) {
    plain[n++] = '@';
    memcpy(plain + n, g_realm, rl);
    n += rl;
  }
  plain[n++] = 0;
  memcpy(plain + n, pass, pl);
  n += pl;
  char resp[1000], req[1300], line[1024];
  b64(plain, n, resp);
  int len = snprintf(req, sizeof req, "AUTH\t%u\tPLAIN\tservice=%s\tnologin\tlip=127.0.0.1\trip=10.%d.%d.%d\tresp=%s\n",
                     ++c->id, g_service, (w->index >> 16) & 255, (w->index >> 8) & 255, w->index & 255, resp);
  if (write(c->fd, req, (size_t)len) != len || read_line(c, line, sizeof line) < 0) {
    dovecot_close(c);
    return -1;
  }
  if (strncmp(line, "OK\t", 3) == 0) return 1;
  if (strncmp(line, "FAIL\t", 5) == 0) return 0;
  dovecot_close(c);
  return -1;
}

/* The request for a guessing or spraying worker's next attempt. */
static void varied(const struct worker* w, struct req* r) {
  char buf[300];
  r->len = 0;
  if (w->mode == SPRAY) {
    snprintf(buf, sizeof buf, "%s%dx%llu", g_user, w->index, (unsigned long long)w->n);
    put(r, buf);
    put(r, g_pass);
  } else {
    put(r, g_user);
    snprintf(buf, sizeof buf, "%s-%d-%llu", g_pass, w->index, (unsigned long long)w->n);
    put(r, buf);
  }
  put(r, g_service);
  put(r, g_realm);
}

static void* run(void* arg) {
  struct worker* w = arg;
  struct req mine;
  char vuser[300], vpass[300];
  w->dc.fd = -1;
  while (!g_stop) {
    if (w->mode != FIXED) varied(w, &mine);
    uint64_t t0 = now_us();
    int r;
    if (g_dovecot) {
      const char* u = w->rq_user;
      const char* p = w->rq_pass;
      if (w->mode == SPRAY) {
        snprintf(vuser, sizeof vuser, "%s%dx%llu", g_user, w->index, (unsigned long long)w->n);
        u = vuser;
      } else if (w->mode == GUESS) {
        snprintf(vpass, sizeof vpass, "%s-%d-%llu", g_pass, w->index, (unsigned long long)w->n);
        p = vpass;
      }
      r = dovecot_request(w, u, p);
    } else {
      r = one_request(w->mode != FIXED ? &mine : w->rq);
    }
    uint64_t dt = now_us() - t0;
    if (g_stop && w->measured) break; /* don't count requests cut by the end */
    w->n++;
    if (r == 1) w->ok++;
    else if (r == 0) w->no++;
    else w->err++;
    if (w->measured) {
      if (w->n > w->cap) {
        w->cap = w->cap ? w->cap * 2 : 4096;
        w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
      }
      w->lat[w->n - 1] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
    }
    if (r < 0) usleep(1000); /* daemon gone or backlog full: don't spin */
    else if (g_gap_us > 0 && w->measured) usleep(g_gap_us);
  }
  dovecot_close(&w->dc);
  return NULL;
}

static int cmp_u32(const void* a, const void* b) {
  uint32_t x = *(const uint32_t*)a, y = *(const uint32_t*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  int conc = 1, idle = 0, wrong = 0, mode = FIXED;
  double secs = 5;
  const char *user = NULL, *pass = NULL, *wpass = "wrong-password", *service = "smtp", *realm = "";
  int opt;
  while ((opt = getopt(argc, argv, "s:c:d:u:p:S:r:i:w:W:m:P:g:")) != -1) {
    switch (opt) {
      case 's': g_socket = optarg; break;
      case 'c': conc = atoi(optarg); break;
      case 'd': secs = atof(optarg); break;
      case 'u': user = optarg; break;
      case 'p': pass = optarg; break;
      case 'S': service = optarg; break;
      case 'r': realm = optarg; break;
      case 'i': idle = atoi(optarg); break;
      case 'w': wrong = atoi(optarg); break;
      case 'W': wpass = optarg; break;
      case 'm': mode = strcmp(optarg, "guess") == 0 ? GUESS : strcmp(optarg, "spray") == 0 ? SPRAY : -1; break;
      case 'g': g_gap_us = (useconds_t)atoi(optarg); break;
      case 'P': g_dovecot = strcmp(optarg, "dovecot") == 0 ? 1 : -1; break;
      default:
        fprintf(stderr, "usage: %s -s socket -c conc -d secs -u user -p pass [-S svc] [-r realm] [-i idle] [-w n -W pass] [-m guess|spray] [-P dovecot] [-g gap_us]\n", argv[0]);
        return 1;
    }
  }
  if (!g_socket || !user || !pass || conc < 1 || mode < 0 || g_dovecot < 0 || strlen(user) > 200 || strlen(pass) > 200 ||
      strlen(realm) > 200 || (g_dovecot && idle > 0)) {
    fprintf(stderr, "missing or bad arguments\n");
    return 1;
  }
  g_io_timeout.tv_sec = (time_t)secs + 2;
  g_user = user;
  g_pass = pass;
  g_service = service;
  g_realm = realm;
  struct req good = {.len = 0}, bad = {.len = 0};
  put(&good, user); put(&good, pass); put(&good, service); put(&good, realm);
  put(&bad, user); put(&bad, wpass); put(&bad, service); put(&bad, realm);

  int* idle_fds = calloc((size_t)idle + 1, sizeof(int));
  int idle_open = 0;
  for (int i = 0; i < idle; i++) {
    int fd = connect_socket(1);
    if (fd >= 0) idle_fds[idle_open++] = fd;
  }

  struct worker* bg = calloc((size_t)wrong + 1, sizeof *bg);
  for (int i = 0; i < wrong; i++) {
    bg[i].rq = &bad;
    bg[i].rq_user = user;
    bg[i].rq_pass = wpass;
    bg[i].index = conc + i;
    pthread_create(&bg[i].tid, NULL, run, &bg[i]);
  }
  if (wrong > 0) usleep(300000); /* let the wrong logins occupy the daemon first */

  struct worker* ws = calloc((size_t)conc, sizeof *ws);
  uint64_t start = now_us();
  for (int i = 0; i < conc; i++) {
    ws[i].rq = &good;
    ws[i].rq_user = user;
    ws[i].rq_pass = pass;
    ws[i].measured = 1;
    ws[i].mode = mode;
    ws[i].index = i;
    pthread_create(&ws[i].tid, NULL, run, &ws[i]);
  }
  usleep((useconds_t)(secs * 1e6));
  g_stop = 1;
  uint64_t elapsed = now_us() - start;
  for (int i = 0; i < conc; i++) pthread_join(ws[i].tid, NULL);
  for (int i = 0; i < wrong; i++) pthread_join(bg[i].tid, NULL);
  for (int i = 0; i < idle_open; i++) close(idle_fds[i]);

  uint64_t n = 0, ok = 0, no = 0, err = 0, wrong_n = 0;
  for (int i = 0; i < conc; i++) { n += ws[i].n; ok += ws[i].ok; no += ws[i].no; err += ws[i].err; }
  for (int i = 0; i < wrong; i++) wrong_n += bg[i].n;
  uint32_t* all = malloc((n + 1) * sizeof *all);
  size_t k = 0;
  for (int i = 0; i < conc; i++)
    for (uint64_t j = 0; j < ws[i].n; j++) all[k++] = ws[i].lat[j];
  qsort(all, k, sizeof *all, cmp_u32);
  double p50 = k ? all[k / 2] / 1000.0 : 0, p99 = k ? all[(size_t)(k * 0.99)] / 1000.0 : 0;
  double mx = k ? all[k - 1] / 1000.0 : 0;
  printf("{\"requests\":%llu,\"ok\":%llu,\"no\":%llu,\"errors\":%llu,\"rps\":%.1f,"
         "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"idle_open\":%d,\"wrong_done\":%llu}\n",
         (unsigned long long)n, (unsigned long long)ok, (unsigned long long)no, (unsigned long long)err,
         n * 1e6 / (double)elapsed, p50, p99, mx, idle_open, (unsigned long long)wrong_n);
  return 0;
}
