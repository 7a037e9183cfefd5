// The dashboard in a real browser (playwright-core driving Debian's chromium,
// no browser download) against three real node processes: login, the three
// nodes and the leader, a kill -9 of the leader seen without reload, a
// switchover from the page, the page carrying on through another member when
// the node that served it dies, the network and disk view, remove and isolate
// confirmations (a dead node removed from the page), and a reader token that
// gets no action buttons.
// With QUORATE_SCREENSHOTS=DIR set, each view is saved there as a PNG
// (docs/images/ holds the committed ones: `npm run screenshots`).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { READER_TOKEN, TOKEN, TestCluster, http, waitFor } from './harness.js';

const CHROMIUM = process.env['QUORATE_CHROMIUM'] ?? '/usr/bin/chromium';

/** Peer TLS certificate files for node1..node3 from a throwaway CA, valid for `days` (openssl, as test/integration/tls.test.ts). */
function peerCerts(dir: string, days: number): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30',
    '-subj', '/CN=quorate-it-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  for (const name of ['node1', 'node2', 'node3']) {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n');
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', String(days), '-extfile', `${name}.ext`);
  }
}
const SHOTS = process.env['QUORATE_SCREENSHOTS'];

async function shot(page: Page, name: string): Promise<void> {
  if (SHOTS === undefined) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** One section of the page, for a view that is below the fold. */
async function shotOf(page: Page, selector: string, name: string): Promise<void> {
  if (SHOTS === undefined) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.locator(selector).screenshot({ path: join(SHOTS, `${name}.png`) });
}

async function login(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/ui/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('[data-testid=leader]').waitFor({ timeout: 15_000 });
}

async function shownLeader(page: Page): Promise<string> {
  return (await page.locator('[data-testid=leader]').textContent()) ?? '';
}

describe('dashboard in chromium', () => {
  let c: TestCluster | undefined;
  let browser: Browser | undefined;
  const certDir = mkdtempSync(join(tmpdir(), 'quorate-it-dash-tls-'));
  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium; .ci/run does it)`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  });
  after(async () => {
    await browser?.close();
    await c?.stop();
    rmSync(certDir, { recursive: true, force: true });
  });

  test('login, three nodes, leader change without reload, switchover from the page, failover of the serving node, reader sees no actions', async () => {
    // A drill period (drills.maxIntervalHours): the drills view says when one is due, or that it is overdue.
    // Peer TLS from certificate files valid for 10 days: each card shows its node's certificate expiry, in the warning style (under 14 days).
    peerCerts(certDir, 10);
    c = await TestCluster.start({
      nodes: 3, extraConfig: () => ({ drills: { maxIntervalHours: 24 } }),
      tls: (i) => ({ certFile: join(certDir, `node${i + 1}.crt`), keyFile: join(certDir, `node${i + 1}.key`), caFile: join(certDir, 'ca.crt') }),
    });
    const leader = await c.waitLeader();
    await c.client().kvPut('app/config', 'v1');
    const sqlSetup = await http(c.nodes[leader]!.url, 'POST', '/v1/db/execute', { token: TOKEN, body: { statements: [
      'CREATE TABLE inventory (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL, note TEXT)',
      ['INSERT INTO inventory VALUES (?, ?, ?)', 'A-100', 12, 'shelf 3'], ['INSERT INTO inventory VALUES (?, ?, ?)', 'B-200', 0, null], ['INSERT INTO inventory VALUES (?, ?, ?)', 'C-300', 7, 'returns'],
    ] } });
    assert.equal(sqlSetup.status, 200, JSON.stringify(sqlSetup.body));
    const serving = [0, 1, 2].find((i) => i !== leader)!;
    const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
    const csp = (await page.request.get(`${c.nodes[serving]!.url}/ui/`)).headers()['content-security-policy'] ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);

    await login(page, c.nodes[serving]!.url, TOKEN);
    await page.locator('article.card').nth(2).waitFor();
    assert.equal(await page.locator('article.card').count(), 3);
    await waitFor('the page names the leader', async () => (await shownLeader(page)).includes(c!.nodes[leader]!.name), 10_000);
    assert.equal(await page.locator(`article.card.leader[data-node=${c.nodes[leader]!.name}]`).count(), 1);
    // Each card shows its node's certificate expiry, under 14 days left: in the warning style.
    for (const n of c.nodes) {
      const cert = page.locator(`article.card[data-node=${n.name}] [data-testid=cert-expiry] li`);
      await cert.first().waitFor();
      assert.match(await cert.first().innerText(), new RegExp(`^peer cert \\(${n.name}\\.crt\\) expires \\d{4}-\\d\\d-\\d\\d \\((9|10) days\\)$`));
      assert.equal(await cert.first().getAttribute('class'), 'warn');
    }
    await shot(page, 'dashboard-topology');

    // Data: the SQL box (the cluster serves replicated SQL): a read-only query's rows in a table; a write is refused, the error shown.
    await page.locator('#sql-text').fill('SELECT sku, qty, note FROM inventory ORDER BY sku');
    await page.locator('[data-testid=sql-run]').click();
    await page.locator('[data-testid=sql-rows] tbody tr').nth(2).waitFor({ timeout: 15_000 });
    assert.deepEqual(await page.locator('[data-testid=sql-rows] thead th').allTextContents(), ['sku', 'qty', 'note']);
    assert.deepEqual(await page.locator('[data-testid=sql-rows] tbody tr').first().locator('td').allTextContents(), ['A-100', '12', 'shelf 3']);
    assert.deepEqual(await page.locator('[data-testid=sql-rows] tbody tr').nth(1).locator('td').allTextContents(), ['B-200', '0', 'NULL']);
    await shotOf(page, 'section[aria-labelledby=sql-h]', 'dashboard-sql');
    await page.locator('#sql-text').fill('DELETE FROM inventory');
    await page.locator('[data-testid=sql-run]').click();
    await page.locator('[data-testid=sql-error]').waitFor({ timeout: 15_000 });
    assert.match((await page.locator('[data-testid=sql-error]').textContent()) ?? '', /^sql_refused: /);
    assert.equal(await page.locator('[data-testid=sql-rows]').count(), 0, 'no rows shown under an error');
    assert.equal((await c.client().request<{ rows: unknown[][] }>('POST', '/v1/db/query', { body: { sql: 'SELECT count(*) FROM inventory' } })).body.rows[0]![0], 3, 'nothing deleted');

    // Drills: none run yet with a 24 h period: overdue.
    await page.locator('[data-testid=drills-overdue]').waitFor({ timeout: 20_000 });
    assert.match((await page.locator('[data-testid=drills-overdue]').textContent()) ?? '', /OVERDUE: no drill has passed yet; a passing drill is due every 1 day\(s\) \(drills\.maxIntervalHours 24\)/);

    // Network and disk: every node's round trip to every other, fsync beside leader changes; alerts firing (none).
    await waitFor('the round-trip matrix is filled', async () => (await page.locator('[data-testid=rtt-matrix] td', { hasText: / ms$/ }).count()) === 6, 20_000);
    await page.locator(`[data-netdisk=${c.nodes[leader]!.name}] svg.chart`).waitFor({ timeout: 20_000 });
    assert.match((await page.locator(`[data-netdisk=${c.nodes[leader]!.name}]`).textContent()) ?? '', /disk free\d+(\.\d)?%/);
    await page.locator('[data-testid=alerts-none]').waitFor();
    // No DR node in this cluster: no promote-dr control. Remove and isolate open a confirmation naming the command.
    assert.equal(await page.locator('[data-action=promote-dr]').count(), 0);
    const other = c.nodes[serving]!.name;
    await page.locator(`article.card[data-node=${other}] [data-action=isolate]`).click();
    assert.match((await page.getByRole('dialog').textContent()) ?? '', new RegExp(`quorate isolate ${other}.*`));
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.locator(`section[aria-labelledby=nd-h]`).scrollIntoViewIfNeeded();
    await shot(page, 'dashboard-network-disk');

    // Operations: a backup from the page, then the audit log shows it.
    await page.locator('[data-action=backup]').click();
    await page.getByRole('button', { name: 'Confirm' }).click();
    await waitFor('the backup is reported done', async () => ((await page.locator('[data-testid=outcome]').textContent().catch(() => '')) ?? '').startsWith('Back up now: done'), 30_000);
    await waitFor('the audit log lists the backup', async () => ((await page.locator('#au-h + table, section[aria-labelledby=au-h]').textContent().catch(() => '')) ?? '').includes('backup'), 20_000);
    await page.locator('section[aria-labelledby=bk-h] td').first().waitFor();

    // Drills: a recorded report is listed with its RTO and RPO; without drills.enabled on any node, no "run a drill" button.
    const report = {
      id: 'd-ui-1', runner: 'cli', startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), kill: 'leader', fault: 'crash', durationMs: 5000, intervalMs: 0,
      rtoTargetMs: 15000, forced: false, rounds: [],
      summary: { roundsRun: 1, rtoMsMax: 287, rtoMsAvg: 287, lostTotal: 0, unknownTotal: 0, passed: true, failures: [] },
    };
    assert.equal((await http(c.nodes[leader]!.url, 'POST', '/v1/drills/reports', { token: TOKEN, body: { report } })).status, 200);
    await page.locator('[data-drill=d-ui-1]').waitFor({ timeout: 30_000 });
    assert.match((await page.locator('[data-drill=d-ui-1]').textContent()) ?? '', /crash of leader.*287 ms.*passed/);
    assert.equal(await page.locator('[data-action^=drill-]').count(), 0, 'no drill button where no node enables drills');
    // A passing drill: no longer overdue, the next one due within the period; a failed one after it: a red point in the chart, still not overdue.
    await page.locator('[data-testid=drills-due]').waitFor({ timeout: 30_000 });
    assert.match((await page.locator('[data-testid=drills-due]').textContent()) ?? '', /^Next drill due by .* \(every 1 day\(s\)\)\.$/);
    const failedReport = { ...report, id: 'd-ui-2', startedAt: new Date().toISOString(), summary: { ...report.summary, rtoMsMax: 19_000, rtoMsAvg: 19_000, passed: false, failures: ['round 1: RTO 19000 ms is above the target drills.rtoTargetMs = 15000 ms'] } };
    assert.equal((await http(c.nodes[leader]!.url, 'POST', '/v1/drills/reports', { token: TOKEN, body: { report: failedReport } })).status, 200);
    await page.locator('[data-testid=drills-chart] circle.fail[data-drill-point=d-ui-2]').waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('[data-testid=drills-chart] circle.pass[data-drill-point=d-ui-1]').count(), 1);
    assert.match((await page.locator('[data-testid=drills-chart]').getAttribute('aria-label')) ?? '', /Worst RTO of the last 2 drill\(s\): from 287 ms to 19000 ms, target 15000 ms; 1 failed/);
    assert.equal(await page.locator('[data-testid=drills-overdue]').count(), 0, 'a failed drill after a passing one does not make it overdue');
    await shotOf(page, 'section[aria-labelledby=dr-h]', 'dashboard-drills');
    await shot(page, 'dashboard-operations');

    // Pause with a reason and a duration: the confirmation shows the CLI flags, the header and banner the reason,
    // the timeline the maintenance record; then resume (the kill -9 below needs automatic failover).
    await page.locator('[data-action=pause]').click();
    await page.getByLabel('Reason').fill('kernel upgrade');
    await page.getByLabel('Ends after').fill('soon');
    assert.equal(await page.getByRole('button', { name: 'Confirm' }).isDisabled(), true, 'a bad duration blocks Confirm');
    await page.getByLabel('Ends after').fill('2h');
    assert.match((await page.getByRole('dialog').textContent()) ?? '', /quorate pause --reason "kernel upgrade" --for 2h/);
    await shot(page, 'dashboard-pause-confirm');
    await page.getByRole('button', { name: 'Confirm' }).click();
    await waitFor('the header shows the pause reason and expiry', async () => /reason: kernel upgrade; until .* \(1[12]\d min left\)/.test((await page.locator('[data-testid=pause-hold]').textContent().catch(() => '')) ?? ''), 20_000);
    await waitFor('the timeline shows the pause with its reason', async () => ((await page.locator('.timeline').textContent().catch(() => '')) ?? '').includes('pause (by operator): kernel upgrade'), 20_000);
    await page.locator('[data-action=pause]', { hasText: 'Resume failover' }).click();
    await page.getByRole('button', { name: 'Confirm' }).click();
    await waitFor('the pause ended', async () => (await page.locator('[data-action=pause]').textContent()) === 'Pause failover', 20_000);

    // kill -9 of the leader: the new one appears without a reload.
    const t0 = Date.now();
    c.kill(leader);
    await waitFor('a new leader shown', async () => {
      const t = await shownLeader(page);
      return t.startsWith('Leader:') && !t.includes(c!.nodes[leader]!.name);
    }, 20_000);
    console.log(`# dashboard showed the new leader ${Date.now() - t0} ms after kill -9`);
    // The timeline gives the write outage of that leadership change as the new leader saw it.
    let outage = '';
    await waitFor('the timeline shows the outage of the new leader\'s election', async () => {
      outage = (await page.locator('.timeline li', { hasText: `term` }).first().locator('[data-testid=outage]').textContent().catch(() => '')) ?? '';
      return /^no leader for [\d.]+ (ms|s)/.test(outage);
    }, 20_000);
    console.log(`# timeline: ${outage}`);
    await shot(page, 'dashboard-leader-killed');

    // Switchover from the page to the other live node.
    const now = await c.waitLeader(20_000, [leader]);
    const target = [0, 1, 2].find((i) => i !== leader && i !== now)!;
    await page.locator(`article.card[data-node=${c.nodes[target]!.name}] [data-action=switchover]`).click();
    await page.getByRole('dialog').waitFor();
    assert.match((await page.getByRole('dialog').textContent()) ?? '', new RegExp(`quorate switchover --to ${c.nodes[target]!.name}`));
    await shot(page, 'dashboard-switchover-confirm');
    await page.getByRole('button', { name: 'Confirm' }).click();
    await waitFor(`${c.nodes[target]!.name} shown as leader`, async () => (await shownLeader(page)).includes(c!.nodes[target]!.name), 20_000);
    assert.equal(await c.waitLeader(20_000, [leader]), target);

    // The node that served the page dies: the page goes on through another member.
    c.startNode(leader);
    await c.waitReady(leader);
    const servingNow = serving;
    if (servingNow === (await c.waitLeader())) {
      // serving node leads: hand leadership away so killing it keeps a quorum and a leader
      await page.locator(`article.card[data-node=${c.nodes[leader]!.name}] [data-action=switchover]`).click();
      await page.getByRole('button', { name: 'Confirm' }).click();
      await waitFor('leadership moved off the serving node', async () => (await c!.waitLeader()) !== servingNow, 20_000);
    }
    c.kill(servingNow);
    await waitFor('the page says its node does not answer and keeps showing a leader', async () => {
      const text = (await page.locator('.banners').textContent().catch(() => '')) ?? '';
      return text.includes('does not answer') && (await shownLeader(page)).startsWith('Leader:');
    }, 20_000);
    await page.locator('#kv-prefix').fill('app/');
    await page.getByRole('button', { name: 'List (first 50)' }).click();
    await page.getByRole('cell', { name: 'app/config' }).waitFor({ timeout: 10_000 });
    await shot(page, 'dashboard-failed-over');

    // Remove the dead node from the page (opened on a live member: the dead one served the first page, and a
    // removed node's origin is no longer allowed by the others), which warns about it; the card goes.
    const dead = c.nodes[servingNow]!.name;
    await page.locator(`article.card[data-node=${dead}] [data-action=remove]`).click();
    assert.match((await page.getByRole('dialog').textContent()) ?? '', /This page was served by it/);
    await page.getByRole('button', { name: 'Cancel' }).click();
    const admin2 = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
    await login(admin2, c.nodes[[0, 1, 2].find((i) => i !== servingNow)!]!.url, TOKEN);
    await admin2.locator(`article.card[data-node=${dead}] [data-action=remove]`).click();
    const dialog = (await admin2.getByRole('dialog').textContent()) ?? '';
    assert.match(dialog, new RegExp(`quorate remove ${dead}`));
    assert.match(dialog, /tolerates no further failure/, 'the preflight says the tolerance drops to 0');
    await shot(admin2, 'dashboard-remove-confirm');
    await admin2.getByRole('button', { name: 'Confirm' }).click();
    await waitFor('the removal is reported done', async () => ((await admin2.locator('[data-testid=outcome]').textContent().catch(() => '')) ?? '').startsWith(`Remove ${dead}: done`), 30_000);
    await waitFor('two cards left', async () => (await admin2.locator('article.card[data-node]').count()) === 2, 20_000);

    // A reader token: the same views, no action buttons.
    const reader = await browser!.newPage({ viewport: { width: 420, height: 900 } });
    const live = [0, 1, 2].find((i) => i !== servingNow)!;
    await login(reader, c.nodes[live]!.url, READER_TOKEN);
    await reader.locator('article.card').first().waitFor();
    assert.equal(await reader.locator('[data-action]').count(), 0);
    await shot(reader, 'dashboard-reader-narrow');
  });
});
