"""The control socket: the pm2 verbs against a running master (`list`, `show`, `stop`...).

Master side: `bind` (before the loop), `server` (accept, peer check) and `handler`
(verbs to operations, through `observe.view`). Client side: `connection` (find and talk
to a master), `commands` (each verb's command line and output) and `monit`. `protocol`
documents the wire format both sides share. May import `observe`, `config`, `policy`.
"""
