"""The master's state and decisions at work: the supervisor, each app's slots, reloads.

`supervisor` owns every app and turns signals and control requests into commands; `app`
owns one app's instance slots and applies the restart, memory and scale policies;
`rolling` runs a zero-downtime reload; `worker` is one running process; `readiness` and
`probe` decide when a worker is ready. The top of the tree below `cli`: may import every
other package except `cli`.
"""
