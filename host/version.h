// The library's version and the git revision it was configured from ("unknown" when the source
// was not a git checkout, e.g. a release tarball). Both fixed at configure time.
#pragma once

namespace clq {
const char* version();       // "0.1.0"
const char* git_revision();  // "a3ec56b1f2c4" or "unknown"
}  // namespace clq
