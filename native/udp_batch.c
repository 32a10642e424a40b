/*
 * udp_batch: send a run of equal-sized UDP datagrams to one peer in one syscall, on a socket Node's dgram owns.
 *
 * Node's dgram costs one sendmsg per datagram; a TFTP window is 16-64 datagrams to the same peer. With UDP GSO
 * (Linux >= 4.18, UDP_SEGMENT) the kernel takes the window as one buffer and cuts it into datagrams of `seg`
 * bytes (the last one may be shorter), so routing, netfilter and the socket layer are crossed once per window.
 * sendmmsg is the fallback where GSO is refused (no checksum offload on the route, xfrm, segment above the MTU):
 * one syscall, but the kernel still builds each datagram on its own.
 *
 * The payload is a ring: `len` bytes from `off` in `buf`, wrapping to its start when they run past its end (the
 * TFTP transfer keeps its packets in a ring of slots). Both calls are synchronous on Node's non-blocking fd.
 *
 * Receiving (recvStart): Node's dgram costs, per datagram, a 64 KiB malloc, a Buffer and an address object, a
 * callback into JavaScript and a second recvmsg that finds the socket empty. recvStart takes a bound dgram socket's
 * fd over (the caller has stopped dgram's own reading) with a uv_poll on Node's loop: each wakeup drains up to `max`
 * datagrams with one recvmmsg into a caller-owned ring, lengths and source addresses into a caller-owned Int32Array,
 * and JavaScript is called once per loop iteration for all receivers that got something (recvDispatch). Nothing is
 * allocated per datagram. Once taken over, the socket must not be sent on through dgram (its libuv watcher would
 * fight the poll for the fd): sendTo and sendGso serve, and recvWantWritable reports when a full send buffer has room
 * again.
 *
 * The spin (recvSpin): right before the loop would sleep, the TFTP transfers' sockets are polled for a few dozen
 * microseconds after their last ACK, and what comes is answered without the sleep and the wakeup. See disp_spin.
 *
 * Built by native/build.mjs with the system C compiler against Node's own headers; N-API symbols resolve at
 * load time from the running node binary, so nothing links against Node.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/uio.h>
#include <node_api.h>
#include <uv.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

/* Older kernels accept at most 64 segments per GSO send (UDP_MAX_SEGMENTS; newer ones 128), and an IP datagram holds
 * at most 65535 bytes with its headers (40 for IPv6): both bound one GSO call, so a window may take a few. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES (65535 - 40 - 8)
#define MMSG_MAX 64

#define CHECK(call)                                                                                                  \
  do {                                                                                                               \
    if ((call) != napi_ok) return NULL;                                                                              \
  } while (0)

static napi_value num(napi_env env, double v) {
  napi_value r;
  if (napi_create_double(env, v, &r) != napi_ok) return NULL;
  return r;
}

static napi_value undefined_value(napi_env env) {
  napi_value u;
  if (napi_get_undefined(env, &u) != napi_ok) return NULL;
  return u;
}

/* Points *ref at v (a strong reference), releasing what it held before. */
static void hold(napi_env env, napi_ref *ref, napi_value v) {
  if (*ref) napi_delete_reference(env, *ref);
  *ref = NULL;
  napi_create_reference(env, v, 1, ref);
}

/* sockaddr(address: string, port: number): Buffer | null — a numeric address (v4, v6, v6 with %scope) as the
 * struct sockaddr the send calls take, resolved once per peer. */
static napi_value js_sockaddr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char host[128];
  size_t hl = 0;
  uint32_t port = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hl) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &port) != napi_ok || port > 65535) {
    napi_throw_type_error(env, NULL, "sockaddr(address: string, port: number)");
    return NULL;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_NUMERICHOST;
  hints.ai_socktype = SOCK_DGRAM;
  napi_value out;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
    CHECK(napi_get_null(env, &out));
    return out;
  }
  void *data;
  CHECK(napi_create_buffer_copy(env, res->ai_addrlen, res->ai_addr, &data, &out));
  if (res->ai_family == AF_INET) ((struct sockaddr_in *)data)->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)data)->sin6_port = htons((uint16_t)port);
  freeaddrinfo(res);
  return out;
}

struct args {
  int fd;
  struct sockaddr *sa;
  socklen_t salen;
  char *buf;
  size_t buflen, off, len, seg;
};

/* (fd, sockaddr, buf, off, len, seg) */
static int get_args(napi_env env, napi_callback_info info, struct args *a) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6) return 0;
  int32_t fd;
  uint32_t off, len, seg;
  size_t salen;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) return 0;
  if (napi_get_buffer_info(env, argv[1], (void **)&a->sa, &salen) != napi_ok) return 0;
  if (napi_get_buffer_info(env, argv[2], (void **)&a->buf, &a->buflen) != napi_ok) return 0;
  if (napi_get_value_uint32(env, argv[3], &off) != napi_ok || napi_get_value_uint32(env, argv[4], &len) != napi_ok ||
      napi_get_value_uint32(env, argv[5], &seg) != napi_ok)
    return 0;
  if (fd < 0 || salen < sizeof(struct sockaddr_in) || seg == 0 || off >= a->buflen || len > a->buflen) return 0;
  a->fd = fd;
  a->salen = (socklen_t)salen;
  a->off = off;
  a->len = len;
  a->seg = seg;
  return 1;
}

/* Fills at most 2 iovecs with `n` bytes of the ring starting at `pos`. */
static int ring_iov(const struct args *a, size_t pos, size_t n, struct iovec *iov) {
  size_t first = a->buflen - pos;
  iov[0].iov_base = a->buf + pos;
  if (n <= first) {
    iov[0].iov_len = n;
    return 1;
  }
  iov[0].iov_len = first;
  iov[1].iov_base = a->buf;
  iov[1].iov_len = n - first;
  return 2;
}

/* The GSO send itself: `len` bytes of the ring from `off`, cut into datagrams of `seg`; bytes sent, or -errno when
 * none could be. A short count means the rest failed (EAGAIN: the socket's send buffer is full). */
static ssize_t send_gso(const struct args *a) {
  size_t per = GSO_MAX_BYTES / a->seg;
  if (per > GSO_MAX_SEGS) per = GSO_MAX_SEGS;
  if (per == 0) return -EMSGSIZE;
  size_t chunk = per * a->seg, done = 0;
  char control[CMSG_SPACE(sizeof(uint16_t))];
  while (done < a->len) {
    size_t n = a->len - done < chunk ? a->len - done : chunk;
    struct iovec iov[2];
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = a->sa;
    mh.msg_namelen = a->salen;
    mh.msg_iov = iov;
    mh.msg_iovlen = ring_iov(a, (a->off + done) % a->buflen, n, iov);
    if (n > a->seg) {
      memset(control, 0, sizeof control);
      mh.msg_control = control;
      mh.msg_controllen = sizeof control;
      struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gso = (uint16_t)a->seg;
      memcpy(CMSG_DATA(cm), &gso, sizeof gso);
    }
    ssize_t r;
    do r = sendmsg(a->fd, &mh, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) return done ? (ssize_t)done : -(ssize_t)errno;
    done += n;
  }
  return (ssize_t)done;
}

/* sendGso(fd, sockaddr, buf, off, len, seg): bytes sent; when none could be, -errno. A short count means the rest
 * failed (EAGAIN: the socket's send buffer is full). */
static napi_value js_send_gso(napi_env env, napi_callback_info info) {
  struct args a;
  if (!get_args(env, info, &a)) {
    napi_throw_type_error(env, NULL, "sendGso(fd, sockaddr, buf, off, len, seg)");
    return NULL;
  }
  return num(env, (double)send_gso(&a));
}

/* sendMmsg(fd, sockaddr, buf, off, len, seg): as sendGso, one sendmmsg per 64 datagrams. */
static napi_value js_send_mmsg(napi_env env, napi_callback_info info) {
  struct args a;
  if (!get_args(env, info, &a)) {
    napi_throw_type_error(env, NULL, "sendMmsg(fd, sockaddr, buf, off, len, seg)");
    return NULL;
  }
  struct mmsghdr msgs[MMSG_MAX];
  struct iovec iovs[MMSG_MAX];
  size_t done = 0;
  while (done < a.len) {
    unsigned k = 0;
    size_t at = done;
    while (k < MMSG_MAX && at < a.len) {
      size_t pos = (a.off + at) % a.buflen;
      size_t n = a.len - at < a.seg ? a.len - at : a.seg;
      /* A datagram never straddles the ring's end: the ring holds whole slots of `seg` bytes. */
      if (pos + n > a.buflen) n = a.buflen - pos;
      iovs[k].iov_base = a.buf + pos;
      iovs[k].iov_len = n;
      memset(&msgs[k], 0, sizeof msgs[k]);
      msgs[k].msg_hdr.msg_name = a.sa;
      msgs[k].msg_hdr.msg_namelen = a.salen;
      msgs[k].msg_hdr.msg_iov = &iovs[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      at += n;
      k++;
    }
    int r;
    do r = sendmmsg(a.fd, msgs, k, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) return num(env, done ? (double)done : -(double)errno);
    for (int i = 0; i < r; i++) done += iovs[i].iov_len;
    if ((unsigned)r < k) return num(env, (double)done);
  }
  return num(env, (double)done);
}


/* ---- receiving ---- */

/* Int32 words per datagram in the meta array: length (or -1 when truncated), source port, family (4 or 6), then the
 * source address as 4 big-endian words (IPv4: word 0 only), then the IPv6 scope id. */
#define META_WORDS 8
#define RECV_MAX 64
/* Batches taken from one socket per loop iteration before the loop runs other handles (libuv drains 32 datagrams). */
#define RECV_ROUNDS 4
/* Int32 words per receiver in the dispatcher's events array: id, datagrams in its ring, became writable (0/1). */
#define EVENT_WORDS 3
/* spinStats() words: spins, spins that caught nothing, datagrams read while spinning (sleeps saved), ms spent. */
enum { SPIN_SPINS, SPIN_MISSES, SPIN_CAUGHT, SPIN_MS, SPIN_STATS };
/* batchStats() words: datagrams sent through the io_uring, io_uring_enter calls, sends that failed, and whether the
 * io_uring is in use (1), not yet tried (0) or unavailable/off (-1). */
enum { BATCH_SENDS, BATCH_CALLS, BATCH_FAILED, BATCH_STATE, BATCH_STATS };
/* Sends queued at most before they go out. */
#define BATCH_MAX 256
/* Longest spin in one loop iteration: the loop's timers and JavaScript's other work wait at most this long. */
#define SPIN_MAX_NS 1000000
/* After a spin that caught nothing, the spin sits out 1, 2, 4 … up to this many loop iterations. */
#define SPIN_BACKOFF_MAX 256

struct disp;

struct rx {
  uv_poll_t poll;
  napi_env env;
  struct disp *disp; /* the environment's dispatcher, which lives as long as the environment */
  napi_ref ring_ref, meta_ref;
  char *ring;
  size_t ring_len, slot;
  int32_t *meta;
  unsigned max;
  int fd, events, id;
  /* Waiting for the dispatcher: datagrams read into the ring (not to be overwritten before JavaScript has seen
   * them), and whether the socket became writable. */
  int queued, nread, writable;
  /* 1 while recvStop has not been called; refs: the JS handle's finalizer, the poll's close callback, and the
   * dispatcher's queue while it holds the receiver. */
  int active, refs;
  /* TFTP autopilot (recvAutopilot): its words, the transfer's ring of DATA packets, and the peer. */
  double *ap;
  napi_ref ap_ref, pool_ref;
  char *pool;
  size_t pool_len;
  struct sockaddr_storage peer;
  socklen_t peerlen;
  int spin_reg; /* in the dispatcher's spin set */
};

/*
 * One dispatcher per Node environment: the receivers' poll callbacks read their sockets during libuv's poll phase
 * and queue themselves; a check handle (which runs right after the poll phase, in the same loop iteration) then calls
 * JavaScript once for all of them, with an events array that lists each receiver's id and what it got. With many
 * sockets ready at once (20 transfers in lock-step wake the server with about 4 ACKs per wakeup, each on its own
 * socket), that is one entry into JavaScript per wakeup instead of one per socket, and each entry costs more than
 * the handful of lines the transfer runs per ACK.
 */
/* A queued send: one datagram of an autopilot receiver's ring to its peer; `first` is its block number. */
struct queued_send {
  struct rx *r;
  double first;
  struct msghdr mh;
  struct iovec iov[2];
};

/* The io_uring the queued sends go out through, mapped by hand (no liburing): submission and completion rings. */
struct uring {
  int fd;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  void *sq_map, *cq_map;
  size_t sq_len, cq_len, sqes_len;
  unsigned n;
  struct queued_send q[BATCH_MAX];
};

struct disp {
  napi_env env;
  napi_ref fn, events_ref;
  int32_t *events;
  size_t cap; /* receivers per call */
  napi_async_context actx;
  uv_check_t check;
  int check_on;
  struct rx **queue, **batch;
  size_t qlen, qcap;
  /* The spin (recvSpin, see disp_spin): the autopilot receivers' sockets in an epoll set of their own, polled from
   * a prepare handle; an idle handle keeps the loop from sleeping while the spin has queued datagrams for
   * JavaScript. last_ns: when the last datagram came for one of them; skip/backoff: prepare calls to sit out after
   * spins that caught nothing. */
  uv_loop_t *loop;
  uv_prepare_t prep;
  uv_idle_t idle;
  int spin_ep, spin_n, prep_on, idle_on;
  uint64_t spin_ns, last_ns;
  unsigned skip, backoff;
  double spin_stats[SPIN_STATS];
  /* Batched sends (see batch_queue): the io_uring while autopilot receivers exist (ap_n), or none. */
  struct uring *ur;
  int ap_n, ur_off;
  double batch_stats[BATCH_STATS];
  /* Tests only (SWARMBOOT_TEST_BATCH_FAIL_EVERY=n): every n-th queued send goes to fd -1 and fails (EBADF), to
   * exercise the failure path on loopback, where sends do not fail. */
  unsigned fail_every, queued_total;
};

static void rx_unref(struct rx *r) {
  if (--r->refs == 0) free(r);
}

static void rx_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  rx_unref((struct rx *)data);
}

static void rx_closed(uv_handle_t *h) {
  struct rx *r = (struct rx *)h->data;
  napi_delete_reference(r->env, r->ring_ref);
  napi_delete_reference(r->env, r->meta_ref);
  if (r->ap_ref) napi_delete_reference(r->env, r->ap_ref);
  if (r->pool_ref) napi_delete_reference(r->env, r->pool_ref);
  rx_unref(r);
}

static struct disp *disp_of(napi_env env) {
  void *d = NULL;
  if (napi_get_instance_data(env, &d) != napi_ok) return NULL;
  return (struct disp *)d;
}

static void disp_run(uv_check_t *h);

/* Puts a receiver on the dispatcher's queue (once) and makes sure the check handle runs this iteration. */
static int rx_enqueue(struct rx *r) {
  if (r->queued) return 1;
  struct disp *d = r->disp;
  if (d->qlen == d->qcap) {
    size_t cap = d->qcap ? d->qcap * 2 : 64;
    struct rx **q = realloc(d->queue, cap * sizeof *q);
    if (!q) return 0;
    d->queue = q;
    struct rx **b = realloc(d->batch, cap * sizeof *b);
    if (!b) return 0;
    d->batch = b;
    d->qcap = cap;
  }
  d->queue[d->qlen++] = r;
  r->queued = 1;
  r->refs++;
  if (!d->check_on) {
    uv_check_start(&d->check, disp_run);
    d->check_on = 1;
  }
  return 1;
}

/*
 * TFTP autopilot. In a transfer that runs clean, nearly every datagram is the ACK that closes the window just sent,
 * and the answer is the next window, whose DATA packets the transfer can have ready in its ring beforehand. Answering
 * that ACK here, in the poll callback, saves the trip into JavaScript (Node's loop iteration, the callback scope,
 * the transfer's code and the call back into this addon for the send): at lock-step that trip is most of the
 * server's user-space time per block. The transfer (server/tftp/transfer.ts) shares its state in a Float64Array,
 * arms the autopilot only when the state is plain (data phase, nothing resent, no timeout since the last progress,
 * the whole window sent) and keeps DATA packets ready past the window. Anything else, and any ACK the autopilot
 * cannot answer with packets already in the ring, goes to JavaScript as before, in order; so does the ACK of the
 * file's last block.
 *
 * What the autopilot does for such an ACK is what Transfer.onAck does: the window is acknowledged, the round trip
 * sampled (RFC 6298, as Transfer.sample), the next window sent (its first datagram on its own, then the rest as one
 * GSO buffer, as Transfer.pump), and the retransmit deadline armed (as Transfer.arm). AP_HANDLED tells the transfer
 * to read the state back before it does anything else.
 */
enum {
  AP_ON,          /* 1: answer ACKs here (the transfer sets it, the autopilot clears it when a send falls short) */
  AP_EXPECT16,    /* 16-bit block number whose ACK closes the window */
  AP_WIN_FROM,    /* window being sent: first and last block (full numbers) */
  AP_WIN_END,
  AP_NEXT,        /* next block to send (past AP_WIN_END once the window is out) */
  AP_SENT_MAX,    /* highest block sent */
  AP_ACKED,       /* highest block acknowledged */
  AP_READY_FROM,  /* DATA packets ready in the ring: blocks AP_READY_FROM … + AP_READY - 1, headers written */
  AP_READY,
  AP_WS,          /* window size */
  AP_LAST_BLOCK,  /* the file's last block, and its payload length */
  AP_LAST_LEN,
  AP_SEG,         /* slot bytes (blksize + 4) and slots in the ring: block b sits at (b % slots) * seg */
  AP_SLOTS,
  AP_WIN_SENT_AT, /* times in the transfer's clock (performance.now()): AP_CLOCK is its offset to uv_hrtime in ms */
  AP_PROGRESS_AT,
  AP_SRTT,
  AP_RTTVAR,
  AP_RTO,
  AP_MIN_RTO,
  AP_MAX_RTO,
  AP_GIVE_UP,
  AP_DEADLINE,
  AP_HANDLED,     /* ACKs answered here since the transfer last read the state back */
  AP_CLOCK,
  AP_WORDS
};

static int same_peer(const struct rx *r, const struct sockaddr_storage *f) {
  if (f->ss_family != r->peer.ss_family) return 0;
  if (f->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)f, *b = (const struct sockaddr_in *)&r->peer;
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (f->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)f, *b = (const struct sockaddr_in6 *)&r->peer;
    return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
  }
  return 0;
}

static void rx_on_poll(uv_poll_t *h, int status, int events);

static void rx_want_writable(struct rx *r) {
  if (r->active && !(r->events & UV_WRITABLE)) {
    r->events |= UV_WRITABLE;
    uv_poll_start(&r->poll, r->events, rx_on_poll);
  }
}

/*
 * Batched sends. With many transfers in lock-step, one wakeup brings several ACKs, each answered with one DATA on
 * its own socket. Sent one sendmsg at a time, each send wakes a client that takes the CPU from the server as the
 * syscall returns (the kernel preempts there), so a batch of k answers costs up to k preemptions, and on a virtual
 * machine a context switch costs more than the send. The autopilot therefore queues single-datagram answers and
 * sends the whole batch in one io_uring_enter: one return to user space, one preemption at most. Measured with 20
 * parallel lock-step transfers on the 2-CPU VM here: 24,000 context switches instead of 135,000 per 600 MB, 10%
 * less CPU, 8-10% faster.
 *
 * The queue is flushed before anything else can send on those sockets or look at the transfers' state: at the
 * start of the dispatcher (the check phase after the poll phase that queued them), before each call into
 * JavaScript, after each batch of the spin, and on recvStop. A send that fails (a full send buffer) is handled as
 * the autopilot's own short send is: the window is marked unsent and JavaScript sends it once the socket has room.
 * Where io_uring is missing or refused (old kernels, seccomp filters, kernel.io_uring_disabled), or sendBatching(0)
 * was called, each answer is sent at once as before.
 */
static void uring_close(struct disp *d) {
  struct uring *u = d->ur;
  if (!u) return;
  d->ur = NULL;
  if (u->sqes) munmap(u->sqes, u->sqes_len);
  if (u->cq_map && u->cq_map != u->sq_map) munmap(u->cq_map, u->cq_len);
  if (u->sq_map) munmap(u->sq_map, u->sq_len);
  close(u->fd);
  free(u);
  if (d->batch_stats[BATCH_STATE] > 0) d->batch_stats[BATCH_STATE] = 0;
}

static struct uring *uring_open(struct disp *d) {
  if (d->ur || d->ur_off) return d->ur;
  struct uring *u = calloc(1, sizeof *u);
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  int fd = u ? (int)syscall(__NR_io_uring_setup, BATCH_MAX, &p) : -1;
  if (fd < 0) {
    free(u);
    d->ur_off = 1;
    d->batch_stats[BATCH_STATE] = -1;
    return NULL;
  }
  u->fd = fd;
  u->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  u->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single && u->cq_len > u->sq_len) u->sq_len = u->cq_len;
  u->sq_map = mmap(NULL, u->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (u->sq_map == MAP_FAILED) u->sq_map = NULL;
  u->cq_map = single ? u->sq_map : mmap(NULL, u->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
  if (u->cq_map == MAP_FAILED) u->cq_map = NULL;
  u->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (u->sqes == MAP_FAILED) u->sqes = NULL;
  d->ur = u;
  if (!u->sq_map || !u->cq_map || !u->sqes || p.sq_entries < BATCH_MAX) {
    uring_close(d);
    d->ur_off = 1;
    d->batch_stats[BATCH_STATE] = -1;
    return NULL;
  }
  char *sq = (char *)u->sq_map, *cq = (char *)u->cq_map;
  u->sq_head = (unsigned *)(sq + p.sq_off.head);
  u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
  u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
  u->sq_array = (unsigned *)(sq + p.sq_off.array);
  u->cq_head = (unsigned *)(cq + p.cq_off.head);
  u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
  u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
  u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  d->batch_stats[BATCH_STATE] = 1;
  return u;
}

/* A queued send that did not go out, handled as after the autopilot's own short send: nothing of the window went
 * out, and JavaScript sends it once the socket has room (or its timer does). Releases the receiver. */
static void batch_failed(struct disp *d, struct queued_send *qs) {
  struct rx *r = qs->r;
  d->batch_stats[BATCH_FAILED]++;
  if (r->active && r->ap && r->ap[AP_NEXT] > qs->first) {
    r->ap[AP_NEXT] = qs->first;
    r->ap[AP_ON] = 0;
    rx_want_writable(r);
  }
  rx_unref(r);
  qs->r = NULL;
}

/* Sends what is queued, in one io_uring_enter, and settles each send: a failed one is handed to JavaScript. */
static void batch_flush(struct disp *d) {
  struct uring *u = d->ur;
  if (!u || u->n == 0) return;
  unsigned n = u->n;
  /* The sends run inline (MSG_DONTWAIT: a full buffer fails at once instead of waiting), so all n completions are
   * there when the call returns; GETEVENTS with min_complete n makes sure of it. */
  long rc;
  do rc = syscall(__NR_io_uring_enter, u->fd, n, n, IORING_ENTER_GETEVENTS, NULL, 0);
  while (rc < 0 && errno == EINTR);
  d->batch_stats[BATCH_CALLS]++;
  unsigned settled = 0;
  if (rc >= 0) {
    unsigned head = __atomic_load_n(u->cq_head, __ATOMIC_ACQUIRE), tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
      struct io_uring_cqe *c = &u->cqes[head & *u->cq_mask];
      if (c->user_data >= n) continue;
      struct queued_send *qs = &u->q[c->user_data];
      size_t want = qs->iov[0].iov_len + (qs->mh.msg_iovlen > 1 ? qs->iov[1].iov_len : 0);
      if (!qs->r) continue;
      if (c->res >= 0 && (size_t)c->res == want) {
        d->batch_stats[BATCH_SENDS]++;
        rx_unref(qs->r);
        qs->r = NULL;
      } else {
        batch_failed(d, qs);
      }
      settled++;
    }
    __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
  }
  /* Anything not settled (io_uring_enter itself failed): counted failed, handed to JavaScript the same way; and the
   * io_uring is given up, each answer is sent at once from now on. */
  for (unsigned i = 0; i < n; i++)
    if (u->q[i].r) batch_failed(d, &u->q[i]);
  u->n = 0;
  if (settled < n) {
    uring_close(d);
    d->ur_off = 1;
    d->batch_stats[BATCH_STATE] = -1;
  }
}

/* Queues one datagram of `r`'s ring of `ringlen` bytes (bytes off … off+len, wrapping) for its peer; 0 when it must be sent at once
 * (no io_uring). The check handle then runs this iteration and flushes. */
static int batch_queue(struct rx *r, size_t ringlen, size_t off, size_t len, double first) {
  struct disp *d = r->disp;
  if (d->ur_off) return 0;
  struct uring *u = d->ur ? d->ur : uring_open(d);
  if (!u) return 0;
  if (u->n == BATCH_MAX) batch_flush(d);
  if (!d->ur) return 0;
  unsigned i = u->n;
  struct queued_send *qs = &u->q[i];
  memset(&qs->mh, 0, sizeof qs->mh);
  qs->mh.msg_name = &r->peer;
  qs->mh.msg_namelen = r->peerlen;
  qs->mh.msg_iov = qs->iov;
  size_t room = ringlen - off;
  qs->iov[0].iov_base = r->pool + off;
  if (len <= room) {
    qs->iov[0].iov_len = len;
    qs->mh.msg_iovlen = 1;
  } else {
    qs->iov[0].iov_len = room;
    qs->iov[1].iov_base = r->pool;
    qs->iov[1].iov_len = len - room;
    qs->mh.msg_iovlen = 2;
  }
  unsigned tail = *u->sq_tail, idx = tail & *u->sq_mask;
  struct io_uring_sqe *e = &u->sqes[idx];
  memset(e, 0, sizeof *e);
  e->opcode = IORING_OP_SENDMSG;
  e->fd = d->fail_every && ++d->queued_total % d->fail_every == 0 ? -1 : r->fd;
  e->addr = (uint64_t)(uintptr_t)&qs->mh;
  e->len = 1;
  e->msg_flags = MSG_DONTWAIT;
  e->user_data = i;
  u->sq_array[idx] = idx;
  __atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
  qs->r = r;
  qs->first = first;
  r->refs++;
  u->n++;
  if (!d->check_on) {
    uv_check_start(&d->check, disp_run);
    d->check_on = 1;
  }
  return 1;
}

/* Answers datagram `i` of the batch if it is the ACK that closes the window and the next window is ready: 1, else 0
 * (the datagram is JavaScript's). */
static int ap_answer(struct rx *r, int i, const struct sockaddr_storage *from) {
  double *ap = r->ap;
  const unsigned char *p = (const unsigned char *)r->ring + (size_t)i * r->slot;
  if (ap[AP_ON] != 1 || r->meta[i * META_WORDS] != 4 || p[0] != 0 || p[1] != 4) return 0;
  if ((double)((p[2] << 8) | p[3]) != ap[AP_EXPECT16] || !same_peer(r, from)) return 0;
  double end = ap[AP_WIN_END], last = ap[AP_LAST_BLOCK];
  double first = end + 1, to = end + ap[AP_WS];
  if (to > last) to = last;
  if (end >= last || ap[AP_NEXT] != first || ap[AP_READY_FROM] != first || ap[AP_READY] < to - first + 1) return 0;
  size_t seg = (size_t)ap[AP_SEG], slots = (size_t)ap[AP_SLOTS];
  if (seg == 0 || slots == 0 || slots * seg > r->pool_len) return 0;

  double now = (double)uv_hrtime() / 1e6 + ap[AP_CLOCK];
  /* Transfer.onAck for the block that closes a window sent once: progress, and a round-trip sample. */
  ap[AP_ACKED] = end;
  ap[AP_PROGRESS_AT] = now;
  double rtt = now - ap[AP_WIN_SENT_AT];
  if (rtt >= 0) {
    if (ap[AP_SRTT] < 0) {
      ap[AP_SRTT] = rtt;
      ap[AP_RTTVAR] = rtt / 2;
    } else {
      double d = ap[AP_SRTT] - rtt;
      ap[AP_RTTVAR] = 0.75 * ap[AP_RTTVAR] + 0.25 * (d < 0 ? -d : d);
      ap[AP_SRTT] = 0.875 * ap[AP_SRTT] + 0.125 * rtt;
    }
    double rto = ap[AP_SRTT] + 4 * ap[AP_RTTVAR];
    if (rto < ap[AP_MIN_RTO]) rto = ap[AP_MIN_RTO];
    if (rto > ap[AP_MAX_RTO]) rto = ap[AP_MAX_RTO];
    ap[AP_RTO] = rto;
  }
  /* Transfer.pump: the window from the ring, its first datagram alone. */
  size_t nb = (size_t)(to - first) + 1;
  size_t bytes = (nb - 1) * seg + (to == last ? (size_t)ap[AP_LAST_LEN] + 4 : seg);
  struct args a;
  a.fd = r->fd;
  a.sa = (struct sockaddr *)&r->peer;
  a.salen = r->peerlen;
  a.buf = r->pool;
  a.buflen = slots * seg;
  a.off = (size_t)((uint64_t)first % slots) * seg;
  a.seg = seg;
  a.len = nb > 1 ? seg : bytes;
  /* A window of one datagram (lock-step) goes into the batch; a longer window goes out at once, its first datagram
   * ahead of the rest. */
  ssize_t sent = nb == 1 && batch_queue(r, a.buflen, a.off, a.len, first) ? (ssize_t)a.len : send_gso(&a);
  if (sent == (ssize_t)a.len && nb > 1) {
    a.off = (a.off + seg) % a.buflen;
    a.len = bytes - seg;
    ssize_t more = send_gso(&a);
    sent = more > 0 ? sent + more : sent;
  }
  if (sent < 0) sent = 0;
  ap[AP_WIN_FROM] = first;
  ap[AP_WIN_END] = to;
  ap[AP_SENT_MAX] = to;
  ap[AP_EXPECT16] = (double)((uint64_t)to & 0xffff);
  ap[AP_READY_FROM] = to + 1;
  ap[AP_READY] -= (double)nb;
  ap[AP_WIN_SENT_AT] = now;
  double deadline = now + ap[AP_RTO], cap = ap[AP_PROGRESS_AT] + ap[AP_GIVE_UP];
  ap[AP_DEADLINE] = deadline < cap ? deadline : cap;
  ap[AP_HANDLED] += 1;
  if ((size_t)sent < bytes) {
    /* A full send buffer (or a route that refuses GSO): the rest goes out from JavaScript once there is room, as
     * after Transfer.sendRun came up short. */
    ap[AP_NEXT] = first + (double)((size_t)sent / seg);
    ap[AP_ON] = 0;
    rx_want_writable(r);
  } else {
    ap[AP_NEXT] = to + 1;
  }
  return 1;
}

/* One recvmmsg into the receiver's ring: datagrams left there for JavaScript (0 when none, or on an error, which it
 * consumes: an ICMP error queued on the socket; the next wakeup tries again, as libuv does). `*raw`: datagrams read,
 * the autopilot's included. */
static int rx_read(struct rx *r, int *raw) {
  struct mmsghdr msgs[RECV_MAX];
  struct iovec iov[RECV_MAX];
  struct sockaddr_storage from[RECV_MAX];
  unsigned max = r->max;
  for (unsigned i = 0; i < max; i++) {
    iov[i].iov_base = r->ring + i * r->slot;
    iov[i].iov_len = r->slot;
    memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_len = 0;
  }
  int n;
  do n = recvmmsg(r->fd, msgs, max, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  *raw = n > 0 ? n : 0;
  if (n <= 0) return 0;
  for (int i = 0; i < n; i++) {
    int32_t *m = r->meta + i * META_WORDS;
    memset(m, 0, META_WORDS * sizeof *m);
    m[0] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int32_t)msgs[i].msg_len;
    if (from[i].ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&from[i];
      m[1] = ntohs(a->sin_port);
      m[2] = 4;
      m[3] = (int32_t)ntohl(a->sin_addr.s_addr);
    } else if (from[i].ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&from[i];
      m[1] = ntohs(a->sin6_port);
      m[2] = 6;
      for (int w = 0; w < 4; w++) {
        uint32_t v;
        memcpy(&v, a->sin6_addr.s6_addr + 4 * w, 4);
        m[3 + w] = (int32_t)ntohl(v);
      }
      m[7] = (int32_t)a->sin6_scope_id;
    }
  }
  if (!r->ap) return n;
  /* The autopilot answers from the front of the batch; from the first datagram it cannot answer on, the rest is
   * JavaScript's, moved to the front of the ring in order. */
  int k = 0;
  while (k < n && ap_answer(r, k, &from[k])) k++;
  if (k == 0 || k == n) return n - k;
  for (int i = k; i < n; i++) {
    memcpy(r->meta + (i - k) * META_WORDS, r->meta + i * META_WORDS, META_WORDS * sizeof *r->meta);
    int32_t len = r->meta[(i - k) * META_WORDS];
    memmove(r->ring + (size_t)(i - k) * r->slot, r->ring + (size_t)i * r->slot, len < 0 ? r->slot : (size_t)len);
  }
  return n - k;
}

/* Reads a readable socket (the ring is free): what the autopilot does not answer is queued for JavaScript. Returns
 * the datagrams read. */
static int rx_readable(struct rx *r) {
  int raw = 0, total = 0;
  /* Full batches the autopilot answered whole: read on, as the dispatcher does for JavaScript's. */
  for (int round = 0; round < RECV_ROUNDS && r->active && r->nread == 0; round++) {
    r->nread = rx_read(r, &raw);
    total += raw;
    if (raw < (int)r->max) break;
  }
  if (r->nread > 0) rx_enqueue(r);
  if (total > 0 && r->spin_reg) r->disp->last_ns = uv_hrtime();
  return total;
}

static void rx_on_poll(uv_poll_t *h, int status, int events) {
  struct rx *r = (struct rx *)h->data;
  if (!r->active) return;
  if (status < 0) events = UV_READABLE; /* let recvmmsg report it, or find nothing */
  if ((events & UV_WRITABLE) && (r->events & UV_WRITABLE)) {
    r->events &= ~UV_WRITABLE;
    uv_poll_start(&r->poll, r->events, rx_on_poll);
    r->writable = 1;
    rx_enqueue(r);
  }
  /* A ring JavaScript has not seen yet is left alone: the socket stays readable and polls again. */
  if ((events & UV_READABLE) && r->nread == 0) rx_readable(r);
}

/* Calls the dispatcher with `k` receivers described in its events array; an exception goes where an exception in
 * any event handler goes. */
static void disp_call(struct disp *d, size_t k) {
  napi_env env = d->env;
  napi_value fn, recv, arg, res;
  if (napi_get_reference_value(env, d->fn, &fn) != napi_ok || !fn) return;
  napi_get_global(env, &recv); /* napi_make_callback wants an object as `this` */
  napi_create_uint32(env, (uint32_t)k, &arg);
  napi_status st = napi_make_callback(env, d->actx, recv, fn, 1, &arg, &res);
  if (st == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

static void disp_run(uv_check_t *h) {
  struct disp *d = (struct disp *)h->data;
  napi_handle_scope scope;
  batch_flush(d);
  if (napi_open_handle_scope(d->env, &scope) != napi_ok) return;
  for (int round = 0; round < RECV_ROUNDS && d->qlen > 0; round++) {
    batch_flush(d); /* what the autopilot queued goes out before JavaScript sends anything */
    /* Take the queue as it is: receivers read again below queue themselves for the next round. */
    size_t n = d->qlen;
    memcpy(d->batch, d->queue, n * sizeof *d->batch);
    d->qlen = 0;
    for (size_t from = 0; from < n; from += d->cap) {
      size_t k = 0;
      for (size_t i = from; i < n && i < from + d->cap; i++) {
        struct rx *r = d->batch[i];
        if (!r->active || (r->nread == 0 && !r->writable)) continue;
        d->events[k * EVENT_WORDS] = r->id;
        d->events[k * EVENT_WORDS + 1] = r->nread;
        d->events[k * EVENT_WORDS + 2] = r->writable;
        k++;
      }
      if (k > 0) disp_call(d, k);
    }
    for (size_t i = 0; i < n; i++) {
      struct rx *r = d->batch[i];
      int full = r->nread == (int)r->max;
      r->queued = 0;
      r->nread = 0;
      r->writable = 0;
      /* A full batch: more may be waiting. Read it now rather than after a trip through epoll. */
      if (r->active && full && round + 1 < RECV_ROUNDS) {
        int raw = 0;
        r->nread = rx_read(r, &raw);
        if (r->nread > 0) rx_enqueue(r);
      }
      rx_unref(r);
    }
  }
  batch_flush(d);
  if (d->qlen == 0 && d->check_on) {
    uv_check_stop(&d->check);
    d->check_on = 0;
  }
  if (d->idle_on) {
    uv_idle_stop(&d->idle);
    d->idle_on = 0;
  }
  napi_close_handle_scope(d->env, scope);
}


/*
 * The spin. A transfer's next ACK often comes a few dozen microseconds after its DATA went out: on loopback, on a
 * virtual switch between virtual machines, on a fast LAN, and whenever many transfers run at once. Sleeping in
 * epoll for that long costs more than the wait itself: the wakeup crosses CPUs (on a virtual machine an IPI to a
 * halted virtual CPU, tens of microseconds), and each wakeup pays Node's loop iteration. So right before the loop
 * would sleep (a prepare handle), while a datagram came for an autopilot receiver less than spin_ns ago, the
 * autopilot receivers' sockets are polled without sleeping, and what comes is answered as in the poll callback.
 *
 * Bounds: the spin ends spin_ns after the last datagram, at SPIN_MAX_NS, before the loop's next timer is due, as
 * soon as any other handle of the loop (an HTTP request, DHCP, a socket in JavaScript's hands) has something, and as
 * soon as a datagram is queued for JavaScript (the idle handle then keeps the loop from sleeping, so the dispatcher
 * runs this iteration). Between polls it yields the CPU to anything else runnable on it. A spin that catches
 * nothing, as on a LAN whose round trip is longer than spin_ns, makes the next ones sit out 1, 2, 4 …
 * SPIN_BACKOFF_MAX loop iterations, so a spin that does not pay costs next to nothing.
 * Measured on the 2-CPU virtual machine here (loopback, atftp): a lock-step transfer 2.2x as fast for less CPU per
 * MB than without the spin, windowsize 16 1.4x as fast.
 */
static void idle_noop(uv_idle_t *h) { (void)h; }

static void disp_spin(uv_prepare_t *h) {
  struct disp *d = (struct disp *)h->data;
  if (d->spin_n == 0 || d->spin_ns == 0 || d->qlen > 0) return;
  uint64_t start = uv_hrtime();
  if (start - d->last_ns > d->spin_ns) return;
  if (d->skip > 0) {
    d->skip--;
    return;
  }
  /* Not past the loop's next timer (-1: none; 0: a timer due, or immediates pending, so no spin at all). */
  int due_ms = uv_backend_timeout(d->loop);
  if (due_ms == 0) return;
  uint64_t limit = SPIN_MAX_NS;
  if (due_ms > 0 && (uint64_t)due_ms * 1000000 < limit) limit = (uint64_t)due_ms * 1000000;
  struct pollfd others = {.fd = uv_backend_fd(d->loop), .events = POLLIN};
  struct epoll_event ev[64];
  uint64_t now = start, last = d->last_ns;
  double caught = 0;
  for (;;) {
    int n = epoll_wait(d->spin_ep, ev, 64, 0);
    now = uv_hrtime();
    if (n > 0) {
      for (int i = 0; i < n; i++) {
        struct rx *r = (struct rx *)ev[i].data.ptr;
        if (r->active && r->nread == 0) {
          int got = rx_readable(r);
          if (got > 0) {
            caught += got;
            last = now;
          }
        }
      }
      batch_flush(d);
      if (d->qlen > 0) {
        if (!d->idle_on) {
          uv_idle_start(&d->idle, idle_noop);
          d->idle_on = 1;
        }
        break;
      }
    } else if (poll(&others, 1, 0) > 0) {
      break; /* the loop has other work: back to it */
    } else {
      /* Whatever else waits for this CPU runs first: the client itself, when it shares the CPU (without this, a
       * lock-step transfer with both on one CPU lost a fifth of its speed: the spin held the CPU the client
       * needed to send the ACK it waited for). With nothing else runnable it returns at once. */
      sched_yield();
    }
    if (now - last > d->spin_ns || now - start > limit) break;
  }
  d->spin_stats[SPIN_SPINS]++;
  d->spin_stats[SPIN_CAUGHT] += caught;
  d->spin_stats[SPIN_MS] += (double)(now - start) / 1e6;
  if (caught > 0) {
    d->backoff = 0;
  } else {
    d->spin_stats[SPIN_MISSES]++;
    d->backoff = d->backoff == 0 ? 1 : (d->backoff * 2 > SPIN_BACKOFF_MAX ? SPIN_BACKOFF_MAX : d->backoff * 2);
    d->skip = d->backoff;
  }
}

/* Adds an autopilot receiver's socket to the spin set (when the spin is on). */
static void spin_add(struct disp *d, struct rx *r) {
  if (d->spin_ns == 0 || r->spin_reg || !r->active) return;
  /* The epoll set exists while it has members: no fd outlives the last transfer. */
  if (d->spin_ep < 0) d->spin_ep = epoll_create1(EPOLL_CLOEXEC);
  if (d->spin_ep < 0) return;
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.ptr = r;
  if (epoll_ctl(d->spin_ep, EPOLL_CTL_ADD, r->fd, &ev) != 0) {
    if (d->spin_n == 0) {
      close(d->spin_ep);
      d->spin_ep = -1;
    }
    return;
  }
  r->spin_reg = 1;
  if (d->spin_n++ == 0 && !d->prep_on) {
    uv_prepare_start(&d->prep, disp_spin);
    d->prep_on = 1;
  }
}

static void spin_remove(struct disp *d, struct rx *r) {
  if (!r->spin_reg) return;
  r->spin_reg = 0;
  epoll_ctl(d->spin_ep, EPOLL_CTL_DEL, r->fd, NULL);
  if (--d->spin_n == 0) {
    if (d->prep_on) uv_prepare_stop(&d->prep);
    d->prep_on = 0;
    close(d->spin_ep);
    d->spin_ep = -1;
  }
}

static void disp_cleanup(void *arg) {
  struct disp *d = (struct disp *)arg;
  batch_flush(d);
  uring_close(d);
  d->ur_off = 1;
  if (d->spin_ep >= 0) close(d->spin_ep);
  d->spin_ep = -1;
  d->spin_ns = 0;
}

/* recvDispatch(fn(k), events: Int32Array): the environment's dispatcher. fn is called once per loop iteration in
 * which receivers got datagrams or became writable, with k receivers described by events words i * 3 …: the id given
 * to recvStart, the number of datagrams now in its ring (datagram j at j * slot, meta words j * 8 …; 0: none), and 1
 * when the socket became writable after recvWantWritable. Called again, it replaces fn and events. */
static napi_value js_recv_dispatch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t;
  napi_typedarray_type tt;
  size_t len;
  void *data;
  if (argc < 2 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function ||
      napi_get_typedarray_info(env, argv[1], &tt, &len, &data, NULL, NULL) != napi_ok || tt != napi_int32_array || len < EVENT_WORDS) {
    napi_throw_type_error(env, NULL, "recvDispatch(fn, events: Int32Array >= 3)");
    return NULL;
  }
  struct disp *d = disp_of(env);
  if (!d) {
    d = calloc(1, sizeof *d);
    if (!d) {
      napi_throw_error(env, NULL, "recvDispatch: out of memory");
      return NULL;
    }
    uv_loop_t *loop;
    CHECK(napi_get_uv_event_loop(env, &loop));
    uv_check_init(loop, &d->check);
    d->check.data = d;
    /* The check runs only while receivers are queued, and never keeps the process alive by itself. */
    uv_unref((uv_handle_t *)&d->check);
    d->loop = loop;
    uv_prepare_init(loop, &d->prep);
    d->prep.data = d;
    uv_unref((uv_handle_t *)&d->prep);
    uv_idle_init(loop, &d->idle);
    d->idle.data = d;
    uv_unref((uv_handle_t *)&d->idle);
    d->spin_ep = -1;
    const char *fail = getenv("SWARMBOOT_TEST_BATCH_FAIL_EVERY");
    d->fail_every = fail ? (unsigned)atoi(fail) : 0;
    napi_add_env_cleanup_hook(env, disp_cleanup, d);
    d->env = env;
    napi_value name, resource;
    napi_create_object(env, &resource);
    napi_create_string_utf8(env, "swarmboot.udp_recv", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, resource, name, &d->actx);
    /* Kept for the environment's life: the check handle lives on Node's loop (no finalizer, so no handle is freed
     * under the loop at teardown). */
    CHECK(napi_set_instance_data(env, d, NULL, NULL));
  }
  hold(env, &d->fn, argv[0]);
  hold(env, &d->events_ref, argv[1]);
  d->events = (int32_t *)data;
  d->cap = len / EVENT_WORDS;
  return undefined_value(env);
}

/* recvStart(fd, ring: Buffer, slot, meta: Int32Array, max, id): handle. Datagrams are read up to `max` at a time into
 * the ring and reported to the dispatcher (recvDispatch, which must be set) under `id`. Throws when the fd is already
 * watched by Node's loop (dgram still reading it). */
static napi_value js_recv_start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, id;
  uint32_t slot, max;
  char *ring;
  size_t ring_len, meta_len;
  napi_typedarray_type tt;
  void *meta;
  if (argc < 6 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_buffer_info(env, argv[1], (void **)&ring, &ring_len) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &slot) != napi_ok ||
      napi_get_typedarray_info(env, argv[3], &tt, &meta_len, &meta, NULL, NULL) != napi_ok || tt != napi_int32_array ||
      napi_get_value_uint32(env, argv[4], &max) != napi_ok || napi_get_value_int32(env, argv[5], &id) != napi_ok ||
      slot == 0 || max == 0 || max > RECV_MAX || (size_t)max * slot > ring_len || meta_len < (size_t)max * META_WORDS) {
    napi_throw_type_error(env, NULL, "recvStart(fd, ring: Buffer >= max*slot, slot, meta: Int32Array >= max*8, max <= 64, id)");
    return NULL;
  }
  struct disp *d = disp_of(env);
  if (!d) {
    napi_throw_error(env, NULL, "recvStart: no dispatcher (call recvDispatch first)");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  struct rx *r = calloc(1, sizeof *r);
  if (!r) {
    napi_throw_error(env, NULL, "recvStart: out of memory");
    return NULL;
  }
  int e = uv_poll_init(loop, &r->poll, fd);
  if (e != 0) {
    free(r);
    napi_throw_error(env, uv_err_name(e), uv_strerror(e));
    return NULL;
  }
  r->poll.data = r;
  r->env = env;
  r->disp = d;
  r->ring = ring;
  r->ring_len = ring_len;
  r->slot = slot;
  r->meta = (int32_t *)meta;
  r->max = max;
  r->fd = fd;
  r->id = id;
  r->events = UV_READABLE;
  r->active = 1;
  r->refs = 2;
  napi_value handle;
  napi_create_reference(env, argv[1], 1, &r->ring_ref);
  napi_create_reference(env, argv[3], 1, &r->meta_ref);
  e = uv_poll_start(&r->poll, r->events, rx_on_poll);
  if (e != 0) {
    r->active = 0;
    r->refs = 1; /* no JS handle will exist */
    uv_close((uv_handle_t *)&r->poll, rx_closed);
    napi_throw_error(env, uv_err_name(e), uv_strerror(e));
    return NULL;
  }
  if (napi_create_external(env, r, rx_finalize, NULL, &handle) != napi_ok) {
    /* No handle to stop it with: stop it here. */
    r->active = 0;
    r->refs = 1;
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, rx_closed);
    return NULL;
  }
  return handle;
}

static struct rx *rx_of(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "expected a handle from recvStart");
    return NULL;
  }
  return (struct rx *)data;
}

/* recvStop(handle): stops watching the fd, at once (the caller may close the socket right after); idempotent. What the
 * dispatcher had queued for it is dropped. */
static napi_value js_recv_stop(napi_env env, napi_callback_info info) {
  struct rx *r = rx_of(env, info);
  if (!r) return NULL;
  if (r->active) {
    r->active = 0;
    struct disp *d = r->disp;
    batch_flush(d);
    spin_remove(d, r);
    /* The io_uring lives while autopilot receivers do: no fd outlives the last transfer. */
    if (r->ap && --d->ap_n == 0) uring_close(d);
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, rx_closed);
  }
  return undefined_value(env);
}

/* recvWantWritable(handle): the dispatcher reports the receiver writable once the socket can take more (after a
 * send returned EAGAIN). */
static napi_value js_recv_want_writable(napi_env env, napi_callback_info info) {
  struct rx *r = rx_of(env, info);
  if (!r) return NULL;
  rx_want_writable(r);
  return undefined_value(env);
}

/* recvAutopilot(handle, ap: Float64Array >= AP_WORDS, pool: Buffer, sockaddr: Buffer): the receiver answers the ACKs
 * that close a window from `pool` (see the autopilot above), to the peer `sockaddr` (as sockaddr() built it), which
 * is also the only source it answers. Called again, it replaces them. */
static napi_value js_recv_autopilot(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL, *ap;
  napi_typedarray_type tt;
  size_t aplen, pool_len, salen;
  char *pool, *sa;
  if (argc < 4 || napi_get_value_external(env, argv[0], &data) != napi_ok || !data ||
      napi_get_typedarray_info(env, argv[1], &tt, &aplen, &ap, NULL, NULL) != napi_ok || tt != napi_float64_array || aplen < AP_WORDS ||
      napi_get_buffer_info(env, argv[2], (void **)&pool, &pool_len) != napi_ok ||
      napi_get_buffer_info(env, argv[3], (void **)&sa, &salen) != napi_ok || salen < sizeof(struct sockaddr_in) ||
      salen > sizeof(struct sockaddr_storage)) {
    napi_throw_type_error(env, NULL, "recvAutopilot(handle, ap: Float64Array, pool: Buffer, sockaddr: Buffer)");
    return NULL;
  }
  struct rx *r = (struct rx *)data;
  spin_add(r->disp, r);
  if (!r->ap && r->active) r->disp->ap_n++;
  hold(env, &r->ap_ref, argv[1]);
  hold(env, &r->pool_ref, argv[2]);
  r->ap = (double *)ap;
  r->pool = pool;
  r->pool_len = pool_len;
  memset(&r->peer, 0, sizeof r->peer);
  memcpy(&r->peer, sa, salen);
  r->peerlen = (socklen_t)salen;
  napi_value words;
  napi_create_uint32(env, AP_WORDS, &words);
  return words;
}

/* The one argument of a dispatcher setting (recvSpin, sendBatching) and the dispatcher; NULL after throwing when
 * there is no argument or no dispatcher yet. */
static struct disp *setting_of(napi_env env, napi_callback_info info, napi_value *arg, const char *name) {
  size_t argc = 1;
  if (napi_get_cb_info(env, info, &argc, arg, NULL, NULL) != napi_ok) return NULL;
  struct disp *d = disp_of(env);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, name);
    return NULL;
  }
  if (!d) {
    napi_throw_error(env, NULL, "no dispatcher (call recvDispatch first)");
    return NULL;
  }
  return d;
}

/* recvSpin(us): how long the loop polls the autopilot receivers without sleeping after their last datagram (see
 * disp_spin); 0 turns the spin off. For the whole environment, and for receivers given an autopilot from now on. */
static napi_value js_recv_spin(napi_env env, napi_callback_info info) {
  napi_value arg;
  uint32_t us;
  struct disp *d = setting_of(env, info, &arg, "recvSpin(us: 0 … 1000000)");
  if (!d) return NULL;
  if (napi_get_value_uint32(env, arg, &us) != napi_ok || us > 1000000) {
    napi_throw_type_error(env, NULL, "recvSpin(us: 0 … 1000000)");
    return NULL;
  }
  d->spin_ns = (uint64_t)us * 1000;
  return undefined_value(env);
}

/* A JS array of n numbers (0 when there is no dispatcher). */
static napi_value number_array(napi_env env, const double *v, uint32_t n) {
  napi_value arr;
  CHECK(napi_create_array_with_length(env, n, &arr));
  for (uint32_t i = 0; i < n; i++) napi_set_element(env, arr, i, num(env, v ? v[i] : 0));
  return arr;
}

/* spinStats(): [spins, spins that caught nothing, datagrams read while spinning, ms spent spinning] since start. */
static napi_value js_spin_stats(napi_env env, napi_callback_info info) {
  (void)info;
  struct disp *d = disp_of(env);
  return number_array(env, d ? d->spin_stats : NULL, SPIN_STATS);
}

/* sendBatching(on): whether the autopilot's single-datagram answers are batched through io_uring (the default) or
 * sent one by one; returns batchStats(). */
static napi_value js_batch_stats(napi_env env, napi_callback_info info);
static napi_value js_send_batching(napi_env env, napi_callback_info info) {
  napi_value arg;
  bool on;
  struct disp *d = setting_of(env, info, &arg, "sendBatching(on: boolean)");
  if (!d) return NULL;
  if (napi_get_value_bool(env, arg, &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "sendBatching(on: boolean)");
    return NULL;
  }
  if (!on) {
    batch_flush(d);
    uring_close(d);
    d->ur_off = 1;
    d->batch_stats[BATCH_STATE] = -1;
  } else if (d->ur_off && d->batch_stats[BATCH_STATE] == -1 && !d->ur) {
    /* Try again (it may have been turned off, not refused): the next queued send opens it, or finds it refused. */
    d->ur_off = 0;
    d->batch_stats[BATCH_STATE] = 0;
  }
  return js_batch_stats(env, info);
}

/* batchStats(): [datagrams sent through io_uring, io_uring_enter calls, sends that failed, state: 1 in use, 0 not
 * yet opened, -1 unavailable or off] since start. */
static napi_value js_batch_stats(napi_env env, napi_callback_info info) {
  (void)info;
  struct disp *d = disp_of(env);
  return number_array(env, d ? d->batch_stats : NULL, BATCH_STATS);
}

/* sendTo(fd, buf, off, len, address: string, port): one datagram to a numeric IPv4 or IPv6 address;
 * bytes sent, or -errno (-EINVAL for an address that is not numeric). */
static napi_value js_send_to(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint32_t off, len, port;
  char *buf;
  size_t buflen, hl;
  char host[64];
  if (argc < 6 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_buffer_info(env, argv[1], (void **)&buf, &buflen) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &off) != napi_ok || napi_get_value_uint32(env, argv[3], &len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[4], host, sizeof host, &hl) != napi_ok || napi_get_value_uint32(env, argv[5], &port) != napi_ok ||
      (size_t)off + len > buflen || port > 65535) {
    napi_throw_type_error(env, NULL, "sendTo(fd, buf, off, len, address, port)");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
    ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    sl = sizeof(struct sockaddr_in);
  } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
    ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    sl = sizeof(struct sockaddr_in6);
  } else {
    /* A scoped IPv6 address (fe80::1%2, fe80::1%eth0): the resolver knows the syntax; still numeric only. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res || res->ai_addrlen > sizeof ss) {
      if (res) freeaddrinfo(res);
      return num(env, -EINVAL);
    }
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    sl = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
  }
  ssize_t r;
  do r = sendto(fd, buf + off, len, 0, (struct sockaddr *)&ss, sl);
  while (r < 0 && errno == EINTR);
  return num(env, r < 0 ? -(double)errno : (double)r);
}

/* preadNowait(fd, buf, off, len, pos): reads what the page cache holds without blocking (preadv2 with RWF_NOWAIT,
 * Linux 4.14+): bytes read, or -errno (-EAGAIN: not all in memory, read it from a thread; -EOPNOTSUPP: this kernel or
 * file system cannot). Saves the TFTP cache a trip through the thread pool for data already in memory. */
static napi_value js_pread_nowait(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint32_t off, len;
  int64_t pos;
  char *buf;
  size_t buflen;
  if (argc < 5 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_buffer_info(env, argv[1], (void **)&buf, &buflen) != napi_ok || napi_get_value_uint32(env, argv[2], &off) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &len) != napi_ok || napi_get_value_int64(env, argv[4], &pos) != napi_ok ||
      (size_t)off + len > buflen || pos < 0) {
    napi_throw_type_error(env, NULL, "preadNowait(fd, buf, off, len, pos)");
    return NULL;
  }
  struct iovec iov = {buf + off, len};
  ssize_t r;
  do r = preadv2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
  while (r < 0 && errno == EINTR);
  return num(env, r < 0 ? -(double)errno : (double)r);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sockaddr", NULL, js_sockaddr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendGso", NULL, js_send_gso, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendMmsg", NULL, js_send_mmsg, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendTo", NULL, js_send_to, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvDispatch", NULL, js_recv_dispatch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvStart", NULL, js_recv_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvStop", NULL, js_recv_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvWantWritable", NULL, js_recv_want_writable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvAutopilot", NULL, js_recv_autopilot, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preadNowait", NULL, js_pread_nowait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvSpin", NULL, js_recv_spin, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spinStats", NULL, js_spin_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendBatching", NULL, js_send_batching, NULL, NULL, NULL, napi_enumerable, NULL},
      {"batchStats", NULL, js_batch_stats, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
