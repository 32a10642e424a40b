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
 * Built by native/build.mjs with the system C compiler against Node's own headers; N-API symbols resolve at
 * load time from the running node binary, so nothing links against Node.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <node_api.h>

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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sockaddr", NULL, js_sockaddr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendGso", NULL, js_send_gso, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendMmsg", NULL, js_send_mmsg, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
