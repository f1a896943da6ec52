// See worker_thread.h.
#include "core/worker_thread.h"

#include <pthread.h>
#include <sched.h>

#include <string>

namespace gw {

bool becomeWorkerThread(const char* name) {
  if (name != nullptr) {
    const std::string shortened = std::string(name).substr(0, 15);  // the kernel's limit
    pthread_setname_np(pthread_self(), shortened.c_str());
  }
  sched_param param{};
  param.sched_priority = 0;  // the only priority SCHED_BATCH has
  return pthread_setschedparam(pthread_self(), SCHED_BATCH, &param) == 0;
}

}  // namespace gw
