"""Campaign: the CPU training campaign (`fer-hybrid campaign run|status|stop`). The
committed plan (runs in the GPU plan's member format), every run checked before anything
trains, one `fer-hybrid train` child per slice with a stop file, the compact copies committed
beside the plan, the status table. It is the top stage: it imports `core`, `fit` (the training
configuration) and `gpu` (the member format); the `train` command line it checks runs through
is handed in by its command, so it never imports `training.commands`."""
