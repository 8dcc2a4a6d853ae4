"""What a service raises when it cannot do its work; the wiring turns these into step failures,
or into a skipped day."""


class MissingInput(RuntimeError):
    """A required input partition or artifact is not there (the message says what to run)."""


class Skipped(RuntimeError):
    """Nothing to do for the day, by design (the wiring logs the reason and records a skip)."""


class NoTrainingData(Skipped, MissingInput):
    """Day D is the first partition: there is no earlier day to train on."""


class AuditFailed(RuntimeError):
    """A blocking rule refused a staged partition or model: it was not published (the message
    names the rule, the day and where the staged output and its reason are)."""
