<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="csrf" content="{{csrf}}"><meta name="commands" content="{{commands}}"><title>Charging manager</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/app.css"></head>
<body>
<header><b>Charging manager</b>
<nav><a href="#dash" id="nav-dash">Dashboard</a><a href="#setup" id="nav-setup">Setup</a><a href="#actions" id="nav-actions">Actions</a></nav>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button class="link" type="submit">Log out</button></form>
</header>
<main id="view"><noscript>This page needs JavaScript; the <code>/cnf</code> API works without it.</noscript></main>
<footer class="muted">v{{version}} · <span id="clock"></span></footer>
<script src="/static/app.js"></script>
</body></html>
