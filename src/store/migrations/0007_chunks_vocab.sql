-- How many chunks contain each indexed term (FTS5's vocabulary view of chunks_fts): a
-- keyword search leaves out terms so common that ranking their matches would cost more
-- than they tell (see Store::keyword_search).
CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab (chunks_fts, 'row');
