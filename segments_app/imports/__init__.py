"""Big-segment imports: receiving a file (`intake`), checking it (`validation`, `checking`), sending its
parts and following them (`sending`), how it ends (`finishing`), the step dispatcher (`pipeline`), the
loop that drives every job (`worker`), how workers share jobs and LaunchDarkly's pauses (`coordination`),
and the files an import keeps (`storage`).

Nothing is imported here: a package facade that loaded the pipeline made every module that needed one
small helper (a lease, a pause) load the whole state machine, and closed an import circle through it.
Import the module you need."""
