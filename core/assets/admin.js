// The admin page's script: shows the hub's health until the live page lands (issue 14).
const status = document.getElementById('status');
fetch('/api/system/health')
  .then((response) => response.json())
  .then((health) => { status.textContent = `${health.service} ${health.version}: ${health.status}`; })
  .catch((error) => { status.textContent = `unreachable: ${error}`; });
