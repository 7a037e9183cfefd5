// Errors of replicated files as the API answers them (codes mapped to HTTP
// in src/api/errors.ts): the message says what to do; `field`, `limit` and
// `path` name what it is about.

export type FilesErrorCode =
  | 'file_too_large'
  | 'file_checksum_mismatch'
  | 'upload_unknown'
  | 'upload_out_of_order'
  | 'files_unavailable'
  | 'range_not_satisfiable';

export interface FilesErrorExtra {
  readonly field?: string;
  readonly limit?: string;
  readonly limitBytes?: number;
  readonly path?: string;
}

export class FilesError extends Error {
  constructor(
    readonly code: FilesErrorCode,
    message: string,
    readonly extra: FilesErrorExtra = {},
  ) {
    super(message);
    this.name = 'FilesError';
  }
}
