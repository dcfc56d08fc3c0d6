// GCC 14's libstdc++ helper that the prebuilt llama.cpp wheel references; bookworm's GCC 12 lacks it.
// It is only reached when an exception escapes a noexcept function: terminate, as GCC 14 does.
#include <exception>
extern "C" [[noreturn]] void __cxa_call_terminate(void*) noexcept { std::terminate(); }
