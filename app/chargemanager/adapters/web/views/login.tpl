<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{"First run" if first_run else "Log in"}} · Charging manager</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/app.css"></head>
<body class="narrow"><main class="card login">
<h1>Charging manager</h1>
% if first_run:
<p>No admin password is set yet. Choose one now: it protects this page and the <code>/cnf</code> API (user <code>admin</code>). At least 8 characters.</p>
% end
% if error:
<p class="err" role="alert" id="form-error">{{error}}</p>
% end
<form method="post" action="{{"/first-run" if first_run else "/login"}}">
<input type="hidden" name="csrf" value="{{csrf}}">
<label>{{"New admin password" if first_run else "Admin password"}}<input type="password" name="password" id="password" autocomplete="{{"new-password" if first_run else "current-password"}}" required autofocus></label>
% if first_run:
<label>Again<input type="password" name="password2" id="password2" autocomplete="new-password" required></label>
% end
<button type="submit">{{"Set password" if first_run else "Log in"}}</button>
</form>
<p class="muted">v{{version}}</p>
</main></body></html>
