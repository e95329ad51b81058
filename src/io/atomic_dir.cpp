#include "io/atomic_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace moeq {
namespace {

std::string read_small(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  return s.substr(0, 64);
}

std::string first_line(std::string s) { return s.substr(0, s.find('\n')); }

}  // namespace

bool is_moeq_output(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(fs::symlink_status(dir, ec)) && fs::is_regular_file(fs::path(dir) / kOutputMarker, ec);
}

AtomicDir::AtomicDir(std::string final_path, bool overwrite) : final_(std::move(final_path)), overwrite_(overwrite) {
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  if (final_.empty()) throw Error("output path is empty");
  lock_path_ = final_ + ".lock";
  lock();
  try {
    remove_stale();
    std::error_code ec;
    const auto st = fs::symlink_status(final_, ec);
    if (fs::exists(st) && !overwrite_)
      throw Error(final_ + ": already exists (choose another output or pass --overwrite)");
    if (fs::exists(st) && !is_moeq_output(final_))
      throw Error(final_ + ": --overwrite replaces only a directory moeq wrote, and this one has no " + kOutputMarker +
                  " marker" + (fs::is_symlink(st) ? " (a symlink)" : fs::is_directory(st) ? "" : " (not a directory)") +
                  "; remove it yourself or choose another output");
    std::string templ = final_ + ".tmp-XXXXXX";
    if (!::mkdtemp(templ.data())) throw Error(final_ + ": cannot create temporary directory: " + std::strerror(errno));
    tmp_ = templ;
    std::ofstream m(tmp_ + "/" + kOutputMarker);
    m << "written by moeq, pid " << ::getpid() << "\n";
    if (!m.flush()) throw Error(tmp_ + "/" + kOutputMarker + ": cannot write: " + std::strerror(errno));
  } catch (...) {
    if (!tmp_.empty()) {
      std::error_code ec;
      fs::remove_all(tmp_, ec);
    }
    unlock();
    throw;
  }
}

void AtomicDir::lock() {
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(final_ + ": cannot create the lock file " + lock_path_ + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      ::close(fd);
      if (e != EWOULDBLOCK) throw Error(lock_path_ + ": cannot lock: " + std::strerror(e));
      // The holder writes its pid just after taking the lock: give it a moment before "unknown".
      std::string holder = first_line(read_small(lock_path_));
      for (int i = 0; i < 20 && holder.empty(); ++i) {
        ::usleep(10000);
        holder = first_line(read_small(lock_path_));
      }
      throw Error(final_ + ": another moeq run (" + (holder.empty() ? "pid unknown" : holder) +
                  ") is writing this output (lock " + lock_path_ + "); wait for it to finish or choose another output");
    }
    // The holder before us may have removed the file after we opened it: lock the one there now.
    struct stat a {}, b {};
    if (::fstat(fd, &a) != 0 || ::stat(lock_path_.c_str(), &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
      ::close(fd);
      continue;
    }
    const std::string pid = "pid " + std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      const int e = errno;
      ::close(fd);
      throw Error(lock_path_ + ": cannot write: " + std::strerror(e));
    }
    lock_fd_ = fd;
    return;
  }
  throw Error(lock_path_ + ": the lock file keeps being replaced by other moeq runs; try again");
}

void AtomicDir::unlock() {
  if (lock_fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // while holding it: a waiter re-checks the inode
  ::close(lock_fd_);
  lock_fd_ = -1;
}

void AtomicDir::remove_stale() {
  // Holding the lock, no live moeq run writes this output: marked temporaries are a dead run's.
  const fs::path p(final_);
  const fs::path parent = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string base = p.filename().string();
  std::error_code ec;
  std::vector<std::string> unmarked, moved_aside;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    const bool tmp = name.rfind(base + ".tmp-", 0) == 0 && name.size() == base.size() + 11;
    const bool old = name.rfind(base + ".old-", 0) == 0 && name.size() == base.size() + 11;
    if (!tmp && !old) continue;
    const std::string full = e.path().string();
    if (!is_moeq_output(full)) {
      unmarked.push_back(full);
      continue;
    }
    // An export moved aside by a run killed before the new one was in place is the only copy.
    if (old && !fs::exists(fs::symlink_status(final_, ec))) {
      moved_aside.push_back(full);
      continue;
    }
    const std::string who = first_line(read_small(full + "/" + kOutputMarker));
    const size_t at = who.find("pid ");
    fs::remove_all(full, ec);
    if (ec) throw Error(full + ": cannot remove this stale temporary of a dead moeq run: " + ec.message());
    stale_.push_back(full + (at == std::string::npos ? "" : " (from " + who.substr(at) + ")"));
  }
  if (!stale_.empty()) {
    std::string list;
    for (const auto& s : stale_) list += (list.empty() ? "" : ", ") + s;
    std::fprintf(stderr, "moeq: removed %zu stale temporar%s of a dead moeq run beside %s: %s\n", stale_.size(),
                 stale_.size() == 1 ? "y" : "ies", final_.c_str(), list.c_str());
  }
  if (!unmarked.empty())
    std::fprintf(stderr, "warning: %zu director%s beside %s look%s like moeq temporaries but carry no %s marker, left in place "
                 "(first: %s); remove them by hand\n", unmarked.size(), unmarked.size() == 1 ? "y" : "ies",
                 final_.c_str(), unmarked.size() == 1 ? "s" : "", kOutputMarker, unmarked[0].c_str());
  if (!moved_aside.empty())
    throw Error(final_ + ": a killed moeq run left the previous export moved aside in " + moved_aside[0] +
                " and no new one in place; rename it back to " + final_ + " (or remove it) and run again");
}

AtomicDir::~AtomicDir() {
  if (!committed_ && !tmp_.empty()) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  unlock();
}

void AtomicDir::commit() {
  std::error_code ec;
  const auto st = fs::symlink_status(final_, ec);
  std::string old;
  if (fs::exists(st)) {
    if (!overwrite_) throw Error(final_ + ": already exists");
    if (!is_moeq_output(final_))
      throw Error(final_ + ": appeared while exporting and has no " + std::string(kOutputMarker) + " marker; not replaced");
    old = final_ + ".old-" + tmp_.substr(tmp_.size() - 6);
    fs::rename(final_, old, ec);
    if (ec) throw Error(final_ + ": cannot move the previous export aside to " + old + ": " + ec.message());
  }
  fs::rename(tmp_, final_, ec);
  if (ec) {
    std::error_code ec2;
    if (!old.empty()) fs::rename(old, final_, ec2);
    throw Error(final_ + ": cannot rename " + tmp_ + " into place: " + ec.message() +
                (old.empty() ? "" : ec2 ? " (the previous export is in " + old + ")" : " (the previous export is back)"));
  }
  committed_ = true;
  if (!old.empty()) {
    fs::remove_all(old, ec);
    if (ec) std::fprintf(stderr, "warning: %s: cannot remove the previous export: %s\n", old.c_str(), ec.message().c_str());
  }
}

}  // namespace moeq
