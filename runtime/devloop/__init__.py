"""The developer loop: restart an app when its files change or on a cron schedule.

`watch` is inotify with ignore rules and debouncing, `runner` ties it and the cron timer
to an app's restart. May import `config` and `logs`; sees the app only through the
small protocol `runner.Restartable`.
"""
