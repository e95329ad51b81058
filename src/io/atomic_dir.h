#pragma once
// An output directory written atomically and by one moeq run at a time:
// - a lock file `OUT.lock` beside OUT (flock, holding the writer's pid) makes a second
//   writer into the same output fail at once, naming the holder's pid;
// - while holding it, temporaries `OUT.tmp-*` / `OUT.old-*` that carry moeq's marker are
//   known to be left by a dead run (a live one would hold the lock): they are removed and
//   reported on one line of stderr;
// - everything is written into `OUT.tmp-XXXXXX` (with the marker `.moeq-export` in it) and
//   renamed to OUT on commit();
// - an existing OUT is replaced only with overwrite and only when it holds the marker (a
//   directory moeq wrote, never an arbitrary folder): on commit() it is moved aside to
//   `OUT.old-*`, the new one renamed into place, and the old one removed only then.
#include <string>
#include <vector>

namespace moeq {

// The file moeq writes into every output directory it creates.
inline constexpr const char* kOutputMarker = ".moeq-export";
bool is_moeq_output(const std::string& dir);

class AtomicDir {
 public:
  AtomicDir(std::string final_path, bool overwrite);
  ~AtomicDir();  // removes the temporary unless committed; releases the lock
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  const std::string& path() const { return tmp_; }
  void commit();
  // Temporaries of dead runs removed when this one started.
  const std::vector<std::string>& removed_stale() const { return stale_; }

 private:
  void lock();
  void remove_stale();
  void unlock();
  std::string final_, tmp_, lock_path_;
  bool overwrite_;
  bool committed_ = false;
  int lock_fd_ = -1;
  std::vector<std::string> stale_;
};

}  // namespace moeq
