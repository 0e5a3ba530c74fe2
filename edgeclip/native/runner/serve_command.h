// `edgeclip-runner serve [--socket PATH]`: the model loaded once, then JSON-lines requests answered
// through edgeclip_handle_request until the input ends: on stdin/stdout, or on a Unix socket, one
// client after another (a connection is served until its client closes it). Lines are bounded
// (EDGECLIP_MAX_REQUEST_BYTES): the rest of a longer line is discarded and answered with an error,
// so no client can make the server buffer without limit. SIGINT and SIGTERM end it cleanly
// (exit 0), after the request in progress, removing the socket it made.
#ifndef EDGECLIP_SERVE_COMMAND_H_
#define EDGECLIP_SERVE_COMMAND_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "args.h"
#include "classify_command.h"
#include "model_handle.h"
#include "plan.h"
#include "request.h"
#include "variants.h"

namespace edgeclip {

constexpr const char* kServeUsage =
    "serve [--bundle DIR] [--variant NAME] [--threads N] [--towers image,text] [--socket PATH]";

// The write end of a pipe the signal handler writes to: a poll on its read end wakes the loop
// however the signal lands between a check and a blocking call.
inline int& StopPipeWriter() {
  static int fd = -1;
  return fd;
}

// A pipe whose read end becomes readable on SIGINT or SIGTERM; SIGPIPE ignored, so a client
// gone mid-reply is a failed write, not the end of the server.
inline int StopOnSignals() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error(std::string("cannot make a pipe: ") + std::strerror(errno));
  StopPipeWriter() = fds[1];
  struct sigaction action{};
  action.sa_handler = [](int) {
    const int saved = errno;
    (void)!write(StopPipeWriter(), "x", 1);
    errno = saved;
  };
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return fds[0];
}

// Waits until `fd` is readable; false when a stop signal came first.
inline bool WaitReadable(int fd, int stop) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {stop, POLLIN, 0}};
  while (poll(fds, 2, -1) < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("poll failed: ") + std::strerror(errno));
  }
  return (fds[1].revents & POLLIN) == 0;
}

inline bool StopRequested(int stop) {
  pollfd fd{stop, POLLIN, 0};
  return poll(&fd, 1, 0) > 0;
}

inline bool WriteAll(int fd, const std::string& text) {
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// One line's reply ("" for a blank line, which gets none). A NUL byte would end the C string
// early, so a line holding one is refused here rather than read as its prefix.
inline std::string Reply(edgeclip_model* model, const std::string& line) {
  if (line.find('\0') != std::string::npos) return ErrorReply("null", "the request holds a NUL byte");
  if (line.find_first_not_of(" \t\r") == std::string::npos) return "";
  char* reply = nullptr;
  if (edgeclip_handle_request(model, line.c_str(), &reply) == -1) throw std::runtime_error(edgeclip_last_error());
  std::string text = reply;
  edgeclip_free_string(reply);
  return text;
}

enum class SessionEnd { kClosed, kStopped };

// Answers the lines read from `in` on `out` until `in` ends (a last line needs no newline), the
// reader cannot be written to, or a stop signal (checked between requests).
inline SessionEnd Serve(edgeclip_model* model, int in, int out, int stop) {
  std::string line;
  bool too_long = false;
  char chunk[1 << 16];
  auto finish = [&] {  // the line read so far answered; false when the reply cannot be sent
    const std::string reply = too_long ? ErrorReply("null", TooLongMessage()) : Reply(model, line);
    line.clear();
    too_long = false;
    return reply.empty() || WriteAll(out, reply + "\n");
  };
  while (WaitReadable(in, stop)) {
    const ssize_t n = read(in, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!line.empty() || too_long) finish();
      return SessionEnd::kClosed;
    }
    for (const char* at = chunk; at < chunk + n;) {
      const char* newline = static_cast<const char*>(std::memchr(at, '\n', static_cast<size_t>(chunk + n - at)));
      const char* end = newline ? newline : chunk + n;
      too_long = too_long || static_cast<size_t>(end - at) > kMaxRequestBytes - line.size();
      if (too_long) line.clear();  // the rest of an over-long line is dropped as it comes
      else line.append(at, end);
      at = end + (newline ? 1 : 0);
      if (newline && !finish()) return SessionEnd::kClosed;
      if (newline && StopRequested(stop)) return SessionEnd::kStopped;
    }
  }
  return SessionEnd::kStopped;
}

// A listening Unix socket at `path`, made mode 0600 (only this user may connect), removed again
// when this object goes if the path still names it.
class UnixListener {
 public:
  explicit UnixListener(const std::string& path) : path_(path) {
    const sockaddr_un address = Address(path);
    if (Stale(path) && unlink(path.c_str()) != 0) throw Failed("cannot remove the stale socket ");
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw Failed("cannot make a socket for ");
    const mode_t mask = umask(0177);
    const int bound = bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    umask(mask);
    if (bound != 0 || listen(fd_, 16) != 0) throw Failed("cannot listen on ");
    if (lstat(path.c_str(), &made_) != 0) made_ = {};
  }

  // Whether `path` is a stale socket (nobody listening), to be replaced; throws when it names
  // anything else, or a socket a server still answers on; false when it is free.
  static bool Stale(const std::string& path) {
    const sockaddr_un address = Address(path);
    struct stat info{};
    if (lstat(path.c_str(), &info) != 0) return false;
    if (!S_ISSOCK(info.st_mode)) {
      throw std::runtime_error(path + " exists and is not a socket; remove it or choose another --socket path");
    }
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = probe >= 0 && connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
    if (probe >= 0) close(probe);
    if (live) throw std::runtime_error("a server is already listening on " + path + "; stop it or choose another --socket path");
    return true;
  }

  ~UnixListener() {
    if (fd_ >= 0) close(fd_);
    struct stat info{};
    if (made_.st_ino != 0 && lstat(path_.c_str(), &info) == 0 && info.st_ino == made_.st_ino &&
        info.st_dev == made_.st_dev) {
      unlink(path_.c_str());
    }
  }

  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // The next client's connection, or -1 when a stop signal came first.
  int Accept(int stop) const {
    while (WaitReadable(fd_, stop)) {
      const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) return client;
      if (errno != EINTR && errno != ECONNABORTED) throw Failed("cannot accept a client on ");
    }
    return -1;
  }

 private:
  static sockaddr_un Address(const std::string& path) {
    sockaddr_un address{};
    if (path.empty() || path.size() >= sizeof(address.sun_path)) {
      throw UsageError("--socket needs a path of 1 to " + std::to_string(sizeof(address.sun_path) - 1) + " bytes");
    }
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size());
    return address;
  }

  std::runtime_error Failed(const std::string& what) const {
    return std::runtime_error(what + path_ + ": " + std::strerror(errno));
  }

  std::string path_;
  int fd_ = -1;
  struct stat made_{};
};

// --towers image,text, else every tower the bundle has for the variant (--variant, else the best
// this CPU runs).
inline int ServeTowers(const Args& args, const std::string& bundle) {
  int towers = 0;
  if (args.Has("--towers")) {
    for (const std::string& name : SplitLabels(args.One("--towers"))) {
      if (name != "image" && name != "text") throw UsageError("--towers takes image, text or image,text, not '" + name + "'");
      towers |= name == "image" ? EDGECLIP_IMAGE : EDGECLIP_TEXT;
    }
    return towers;
  }
  const Plan plan = ReadPlan(bundle);
  const std::string variant = ChooseVariant(plan, args.One("--variant"), {}, DetectCpuFeatures());
  for (const Tower& tower : plan.towers) {
    if (tower.variant == variant) towers |= tower.name == "image" ? EDGECLIP_IMAGE : tower.name == "text" ? EDGECLIP_TEXT : 0;
  }
  return towers;
}

inline void ServeMain(const Args& args, const std::string& bundle) {
  const std::string socket_path = args.One("--socket");
  if (args.Has("--socket")) UnixListener::Stale(socket_path);  // a bad path fails before the slow load
  const int towers = ServeTowers(args, bundle);
  const int stop = StopOnSignals();
  const ModelHandle model(bundle, args, towers, "serve");
  if (!args.Has("--socket")) {
    Serve(model.get(), STDIN_FILENO, STDOUT_FILENO, stop);
    return;
  }
  const UnixListener listener(socket_path);
  std::fprintf(stderr, "edgeclip-runner serve: listening on %s\n", socket_path.c_str());
  for (int client; (client = listener.Accept(stop)) >= 0;) {
    const SessionEnd end = Serve(model.get(), client, client, stop);
    close(client);
    if (end == SessionEnd::kStopped) return;
  }
}

}  // namespace edgeclip

#endif  // EDGECLIP_SERVE_COMMAND_H_
