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
 * datagrams with one recvmmsg into a caller-owned ring and calls JavaScript once with their count, their lengths
 * and source addresses in a caller-owned Int32Array. Nothing is allocated per datagram. Once taken over, the socket
 * must not be sent on through dgram (its libuv watcher would fight the poll for the fd): sendTo and sendGso serve,
 * and recvWantWritable reports when a full send buffer has room again.
 *
 * Built by native/build.mjs with the system C compiler against Node's own headers; N-API symbols resolve at
 * load time from the running node binary, so nothing links against Node.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <node_api.h>
#include <uv.h>

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

/* sendGso(fd, sockaddr, buf, off, len, seg): bytes sent; when none could be, -errno. A short count means the rest
 * failed (EAGAIN: the socket's send buffer is full). */
static napi_value js_send_gso(napi_env env, napi_callback_info info) {
  struct args a;
  if (!get_args(env, info, &a)) {
    napi_throw_type_error(env, NULL, "sendGso(fd, sockaddr, buf, off, len, seg)");
    return NULL;
  }
  size_t per = GSO_MAX_BYTES / a.seg;
  if (per > GSO_MAX_SEGS) per = GSO_MAX_SEGS;
  if (per == 0) return num(env, -EMSGSIZE);
  size_t chunk = per * a.seg, done = 0;
  char control[CMSG_SPACE(sizeof(uint16_t))];
  while (done < a.len) {
    size_t n = a.len - done < chunk ? a.len - done : chunk;
    struct iovec iov[2];
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = a.sa;
    mh.msg_namelen = a.salen;
    mh.msg_iov = iov;
    mh.msg_iovlen = ring_iov(&a, (a.off + done) % a.buflen, n, iov);
    if (n > a.seg) {
      memset(control, 0, sizeof control);
      mh.msg_control = control;
      mh.msg_controllen = sizeof control;
      struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gso = (uint16_t)a.seg;
      memcpy(CMSG_DATA(cm), &gso, sizeof gso);
    }
    ssize_t r;
    do r = sendmsg(a.fd, &mh, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) return num(env, done ? (double)done : -(double)errno);
    done += n;
  }
  return num(env, (double)done);
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
/* Wakeups drain at most this many batches before letting the loop run other handles (libuv drains 32 datagrams). */
#define RECV_ROUNDS 4

struct rx {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb, ring_ref, meta_ref;
  napi_async_context actx;
  char *ring;
  size_t ring_len, slot;
  int32_t *meta;
  unsigned max;
  int fd, events;
  /* 1 while recvStop has not been called; refs: the JS handle's finalizer and the poll's close callback. */
  int active, refs;
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
  napi_delete_reference(r->env, r->cb);
  napi_delete_reference(r->env, r->ring_ref);
  napi_delete_reference(r->env, r->meta_ref);
  napi_async_destroy(r->env, r->actx);
  rx_unref(r);
}

/* Calls the JS callback with one number; an exception goes where an exception in any event handler goes. */
static int rx_call(struct rx *r, int n) {
  napi_env env = r->env;
  napi_value cb, recv, arg, res;
  if (napi_get_reference_value(env, r->cb, &cb) != napi_ok || !cb) return 0;
  napi_get_global(env, &recv); /* napi_make_callback wants an object as `this` */
  napi_create_int32(env, n, &arg);
  napi_status st = napi_make_callback(env, r->actx, recv, cb, 1, &arg, &res);
  if (st == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
    return 0;
  }
  return st == napi_ok;
}

static void rx_on_poll(uv_poll_t *h, int status, int events) {
  struct rx *r = (struct rx *)h->data;
  if (!r->active) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(r->env, &scope) != napi_ok) return;
  if (status < 0) events = UV_READABLE; /* let recvmmsg report it, or find nothing */
  if ((events & UV_WRITABLE) && (r->events & UV_WRITABLE)) {
    r->events &= ~UV_WRITABLE;
    uv_poll_start(&r->poll, r->events, rx_on_poll);
    rx_call(r, -1);
  }
  struct mmsghdr msgs[RECV_MAX];
  struct iovec iov[RECV_MAX];
  struct sockaddr_storage from[RECV_MAX];
  for (int round = 0; round < RECV_ROUNDS && r->active && (events & UV_READABLE); round++) {
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
    /* EAGAIN: drained. Anything else (an ICMP error queued on the socket) is consumed by this call; try again next
     * wakeup, as libuv does. */
    if (n <= 0) break;
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
    if (!rx_call(r, n)) break;
    if ((unsigned)n < max) break;
  }
  napi_close_handle_scope(r->env, scope);
}

/* recvStart(fd, ring: Buffer, slot, meta: Int32Array, max, cb(n)): handle. cb gets the number of datagrams now in
 * the ring (datagram i at i * slot, described by meta words i * 8 …), or -1 when the socket became writable after
 * recvWantWritable. Throws when the fd is already watched by Node's loop (dgram still reading it). */
static napi_value js_recv_start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint32_t slot, max;
  char *ring;
  size_t ring_len, meta_len;
  napi_typedarray_type tt;
  void *meta;
  napi_valuetype cbt;
  if (argc < 6 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_buffer_info(env, argv[1], (void **)&ring, &ring_len) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &slot) != napi_ok ||
      napi_get_typedarray_info(env, argv[3], &tt, &meta_len, &meta, NULL, NULL) != napi_ok || tt != napi_int32_array ||
      napi_get_value_uint32(env, argv[4], &max) != napi_ok || napi_typeof(env, argv[5], &cbt) != napi_ok || cbt != napi_function ||
      slot == 0 || max == 0 || max > RECV_MAX || (size_t)max * slot > ring_len || meta_len < (size_t)max * META_WORDS) {
    napi_throw_type_error(env, NULL, "recvStart(fd, ring: Buffer >= max*slot, slot, meta: Int32Array >= max*8, max <= 64, cb)");
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
  r->ring = ring;
  r->ring_len = ring_len;
  r->slot = slot;
  r->meta = (int32_t *)meta;
  r->max = max;
  r->fd = fd;
  r->events = UV_READABLE;
  r->active = 1;
  r->refs = 2;
  napi_value name, resource, handle;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "swarmboot.udp_recv", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &r->actx);
  napi_create_reference(env, argv[5], 1, &r->cb);
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

/* recvStop(handle): stops watching the fd, at once (the caller may close the socket right after); idempotent. */
static napi_value js_recv_stop(napi_env env, napi_callback_info info) {
  struct rx *r = rx_of(env, info);
  if (!r) return NULL;
  if (r->active) {
    r->active = 0;
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, rx_closed);
  }
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

/* recvWantWritable(handle): the callback gets -1 once the socket can take more (after a send returned EAGAIN). */
static napi_value js_recv_want_writable(napi_env env, napi_callback_info info) {
  struct rx *r = rx_of(env, info);
  if (!r) return NULL;
  if (r->active && !(r->events & UV_WRITABLE)) {
    r->events |= UV_WRITABLE;
    uv_poll_start(&r->poll, r->events, rx_on_poll);
  }
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sockaddr", NULL, js_sockaddr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendGso", NULL, js_send_gso, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendMmsg", NULL, js_send_mmsg, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendTo", NULL, js_send_to, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvStart", NULL, js_recv_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvStop", NULL, js_recv_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvWantWritable", NULL, js_recv_want_writable, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
