# ccflux hook wrapper for native Windows PowerShell (5.1 or pwsh 7), for machines where
# Claude Code runs hooks in PowerShell because Git Bash is absent. With Git Bash the POSIX
# wrapper `ccflux-hook` beside this file is used instead.
#
# Same contract as `ccflux-hook`: start the frozen `ccflux hook` for this CPU with the hook's
# JSON event on stdin (bytes passed through unchanged), print nothing on stdout, never put a
# secret in argv, and always exit 0. Failures are logged to the state directory's error.log.

$ErrorActionPreference = 'Stop'

function Write-CcfluxProblem([string]$Problem) {
    $line = '{0} pid={1} wrapper: {2}' -f [DateTime]::UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'"), $PID, $Problem
    try {
        # The state directory, resolved as `ccflux hook` resolves it.
        $dir = $env:CCFLUX_HOME
        if (-not $dir) { $dir = $env:CLAUDE_PLUGIN_DATA }
        if (-not $dir) {
            $config = $env:CLAUDE_CONFIG_DIR
            if (-not $config) { $config = Join-Path $env:USERPROFILE '.claude' }
            $dir = Join-Path $config 'ccflux'
        }
        # A directory under the user's profile is private to that user by its inherited ACL.
        [void][System.IO.Directory]::CreateDirectory($dir)
        $log = Join-Path $dir 'error.log'
        if ((Test-Path -LiteralPath $log) -and ((Get-Item -LiteralPath $log).Length -gt 1MB)) {
            Move-Item -LiteralPath $log -Destination "$log.1" -Force
        }
        [System.IO.File]::AppendAllText($log, "$line`n")
    } catch {
        [Console]::Error.WriteLine("ccflux: $line")
    }
}

try {
    $root = $env:CLAUDE_PLUGIN_ROOT
    if (-not $root) { $root = Split-Path -Parent $PSScriptRoot }
    # A 32-bit PowerShell on a 64-bit Windows names the real CPU in PROCESSOR_ARCHITEW6432.
    $cpu = $env:PROCESSOR_ARCHITEW6432
    if (-not $cpu) { $cpu = $env:PROCESSOR_ARCHITECTURE }
    switch ($cpu) {
        'AMD64' { $arch = 'x86_64' }
        'ARM64' { $arch = 'arm64' }
        default { $arch = "$cpu".ToLowerInvariant() }
    }
    $bin = Join-Path $root "bin\windows-$arch\ccflux\ccflux.exe"
    $stdin = [Console]::OpenStandardInput()

    if (-not (Test-Path -LiteralPath $bin -PathType Leaf)) {
        $stdin.CopyTo([System.IO.Stream]::Null)  # drain the event so Claude Code's write never fails
        Write-CcfluxProblem "ccflux binary missing for windows-${arch}: $bin (reinstall the plugin)"
        exit 0
    }

    $psi = New-Object System.Diagnostics.ProcessStartInfo
    $psi.FileName = $bin
    $psi.Arguments = 'hook'
    $psi.UseShellExecute = $false
    $psi.CreateNoWindow = $true
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true  # read and dropped below: nothing reaches Claude Code
    $proc = [System.Diagnostics.Process]::Start($psi)
    $drain = $proc.StandardOutput.BaseStream.CopyToAsync([System.IO.Stream]::Null)
    try {
        $stdin.CopyTo($proc.StandardInput.BaseStream)
    } finally {
        $proc.StandardInput.Close()
    }
    $proc.WaitForExit()
    [void]$drain.Wait(1000)
    if ($proc.ExitCode -ne 0) {
        Write-CcfluxProblem "ccflux hook exited with status $($proc.ExitCode) ($bin)"
    }
} catch {
    Write-CcfluxProblem "wrapper failed: $($_.Exception.Message)"
}
exit 0
