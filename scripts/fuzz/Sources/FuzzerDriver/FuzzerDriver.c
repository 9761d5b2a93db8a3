// The declaration in include/FuzzerDriver.h is all: libFuzzer (linked by -sanitize=fuzzer) defines it.
#include "FuzzerDriver.h"
