/** The registry: a new scenario is one file in this folder and one line here. */
import { dbBlackhole } from './db-blackhole.js';
import { dbRefuse } from './db-refuse.js';
import { dbRestart } from './db-restart.js';
import { dbSlow } from './db-slow.js';
import { growth } from './growth.js';
import { listenLoss } from './listen-loss.js';
import { poison } from './poison.js';
import type { Scenario } from './scenario.js';
import { sigkill } from './sigkill.js';
import { soak } from './soak.js';
import { stalledReader } from './stalled-reader.js';
import { storm } from './storm.js';
import { workerKill } from './worker-kill.js';

export const SCENARIOS: Scenario[] = [dbRefuse, dbBlackhole, dbSlow, dbRestart, listenLoss, sigkill, storm, soak, growth, poison, stalledReader, workerKill];
