// What the benchmarks read of a process from /proc (Linux only): resident
// memory and CPU time.
import { readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** VmRSS of a process in MB (one decimal), or 0 when it cannot be read. */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : 0;
  } catch {
    return 0;
  }
}

/** Fields after the command name of /proc/PID/stat (field 3 is index 0). */
function statFields(pid: number | 'self'): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of a process in ms (fields 14, 15 of /proc/PID/stat), or undefined off Linux. */
export function cpuMsOf(pid: number | 'self'): number | undefined {
  try {
    const f = statFields(pid);
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** CPU in ms of this process's waited-for children (cutime + cstime), or undefined off Linux. */
export function childrenCpuMs(): number | undefined {
  try {
    const f = statFields('self');
    return (Number(f[13]) + Number(f[14])) * TICK_MS;
  } catch {
    return undefined;
  }
}
