"""Minimal TAP producer for prove: ok/not ok lines, skips, diagnostics and
a trailing plan.  Exit status is non-zero when anything failed."""

import json
import sys
import traceback


class TAP:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, desc, diag=None):
        self.n += 1
        line = "%s %d - %s" % ("ok" if cond else "not ok", self.n, desc.replace("\n", " "))
        print(line, flush=True)
        if not cond:
            self.failed += 1
            if diag is not None:
                self.diag(diag if isinstance(diag, str) else json.dumps(diag, ensure_ascii=False,
                                                                         default=str)[:2000])
        return bool(cond)

    def is_(self, got, want, desc):
        return self.ok(got == want, desc, "got:  %r\n  want: %r" % (got, want))

    def skip(self, desc, reason):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, desc, reason), flush=True)

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)

    def run(self, fn):
        """Run the test body; an exception is a failure, never a crash
        without a plan."""
        try:
            fn(self)
        except Exception:
            self.ok(False, "test body raised", traceback.format_exc())
        self.done()
