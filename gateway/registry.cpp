#include "gateway/registry.h"

// Each component's folder defines `gw::<namespace>::<factory>()`; declaring them here keeps the
// list the only place a new component is named (no header per component to include).
namespace gw {
#define GW_COMPONENT(ns, factory) \
  namespace ns {                  \
  Component factory();            \
  }
#include "gateway/builtin_components.inc"
#undef GW_COMPONENT

std::vector<Component> builtinComponents() {
  return {
#define GW_COMPONENT(ns, factory) ns::factory(),
#include "gateway/builtin_components.inc"
#undef GW_COMPONENT
  };
}

std::vector<Omitted> omittedComponents() {
  std::vector<Omitted> out;
#ifndef GW_WITH_COAP
  out.push_back({"coap", "GW_WITH_COAP"});
#endif
#ifndef GW_WITH_FILE_SINK
  out.push_back({"file", "GW_WITH_FILE_SINK"});
#endif
  return out;
}

}  // namespace gw
